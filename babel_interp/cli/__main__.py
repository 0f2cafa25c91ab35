"""python -m babel_interp.cli"""

import sys

from babel_interp.cli import main

sys.exit(main())
