"""Working-language logit lens: throughput and peak memory against the naive full-cache method.

The measurement is :func:`babel_interp.bench.logit_lens.measure_logit_lens_memory` (also run
by ``python -m babel_interp.experiments.gpu_check``); this script is its command line.

What both methods decode, what is printed and how peak memory is read: see that module's
docstring.

Reference figure (H200, GPT-2-small shape, 2,048 tokens): full-cache logit lens 13.4 GB peak,
residual-only 2.7 GB. Usage::

    python benchmarks/logit_lens_memory.py                       # GPT-2-small shape, CPU
    python benchmarks/logit_lens_memory.py --device cuda --n-probes 64
    python benchmarks/logit_lens_memory.py --preset pilot --d-vocab 8192   # quick
"""

from babel_interp.bench.logit_lens import main

if __name__ == "__main__":
    main()
