# Two entry points for a fresh clone: `make demo` and `make test` (see README.md).
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip
AUDIT   := $(VENV)/bin/auditkit
STAMP   := $(VENV)/.installed
PYTHON  ?= python3
ZOO     := cnn-digits lstm-reviews fraud-mlp gan-digits

.PHONY: install demo test test-fast browser zoo reports bench clean

# torch and torchvision are pinned to the builds this machine serves from local disk
# (a range in pyproject.toml admits them); everything else comes from pyproject.toml.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The main job on the built-in default: scan a committed zoo model, write results and a report.
demo: install
	$(AUDIT) scan zoo/cnn-digits/model.pt --out out/demo
	@echo "results in out/demo/"

# Headless Chromium for the browser tests (Debian packages; never a downloaded browser).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "browser tests need /usr/bin/chromium (apt-get install chromium chromium-driver)"; fi; \
	fi

test: install browser
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow" -x

# Retrain every zoo model from its recipe (CPU: a few minutes in all).
zoo: install
	for m in $(ZOO); do $(AUDIT) zoo train $$m --quiet || exit 1; done

reports: install
	for m in $(ZOO); do $(AUDIT) scan zoo/$$m/model.pt --out reports/$$m --quiet || exit 1; done

bench: install
	$(PY) bench/scan.py

clean:
	rm -rf out .pytest_cache
