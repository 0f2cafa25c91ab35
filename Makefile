# Set-up and checks. `make test` and `make demo` create the environment when it is missing.
PYTHON ?= python3
VENV ?= .venv
VENV_TL4 ?= .venv-tl4
CONSTRAINTS ?= constraints/tl3.txt
CONSTRAINTS_TL4 ?= constraints/tl4.txt
PYTEST_ARGS ?=
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: install install-tl4 toolchains browser lint test test-tl4 demo demo-check bench clean

# TransformerLens 3.9 (HookedTransformer): the default, pinned environment.
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $@

# TransformerLens 4.x (TransformerBridge.boot_native): the same suite on the new line.
$(VENV_TL4)/.installed: pyproject.toml $(CONSTRAINTS_TL4)
	test -x $(VENV_TL4)/bin/python || $(PYTHON) -m venv $(VENV_TL4)
	$(VENV_TL4)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_TL4)/bin/python -m pip install --quiet -c $(CONSTRAINTS_TL4) -e '.[dev]'
	touch $@

# Compilers and interpreters that execute generated programs (PHP, Go, C++, C#) come from the
# distribution. Python is the running interpreter, or Debian's python3 where the sandbox's
# unprivileged user cannot reach the running one (a pyenv under /root). Root installs them;
# anyone else is told how.
TOOLCHAIN_PACKAGES ?= php-cli golang-go g++ mono-mcs mono-runtime python3
toolchains:
	@if command -v php >/dev/null && command -v go >/dev/null && command -v g++ >/dev/null \
	    && command -v mcs >/dev/null && command -v mono >/dev/null && test -x /usr/bin/python3; then \
	  echo "toolchains: php, go, g++, mcs, mono and /usr/bin/python3 are installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(TOOLCHAIN_PACKAGES); \
	else \
	  echo "toolchains: missing; run as root: apt-get install $(TOOLCHAIN_PACKAGES)" >&2; exit 1; \
	fi

# Headless Chromium and its driver, for the report's browser check (`make demo-check` and
# tests/test_report_browser.py).
BROWSER_PACKAGES ?= chromium chromium-driver
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  echo "browser: chromium and chromedriver are installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(BROWSER_PACKAGES); \
	else \
	  echo "browser: missing; run as root: apt-get install $(BROWSER_PACKAGES)" >&2; exit 1; \
	fi

install: $(VENV)/.installed
install-tl4: $(VENV_TL4)/.installed

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install lint
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

test-tl4: install-tl4
	$(VENV_TL4)/bin/python -m pytest -q $(PYTEST_ARGS)

DEMO ?= runs/demo
demo: install
	$(VENV)/bin/python -m babel_interp.experiments.babel_tower --profile quick --out $(DEMO)
	$(VENV)/bin/python -m babel_interp.experiments.optimize_corpus --from-experiment $(DEMO)
	$(VENV)/bin/babel-interp report --experiment $(DEMO)

# The demo's report, checked: figures are PNGs, intervals parse, the study and mixtures exist.
demo-check: install
	$(VENV)/bin/python -m babel_interp.experiments.check_report $(DEMO) \
	  --browser --max-pages 12 --max-mb 1.5 --screenshot $(DEMO)/first_screen.png
	$(VENV)/bin/babel-interp verify $(DEMO) --quiet

bench: install
	for b in benchmarks/*.py; do $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(VENV_TL4) .pytest_cache .ruff_cache
