# Two entry points for a fresh clone: `make demo` and `make test` (see README.md).
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip
AUDIT   := $(VENV)/bin/auditkit
STAMP   := $(VENV)/.installed
PYTHON  ?= python3
# The zoo's models come from its registry (auditkit.zoo.recipes), dependencies first; the gated
# ones from the committed policy (a [gate.models."NAME"] table in auditkit.toml). Adding a zoo
# model never touches this file. Expanded when a recipe runs (after `install`).
ZOO      = $(shell $(PY) -m auditkit.zoo)
ZOO_GATE = $(shell $(PY) -m auditkit.zoo auditkit.toml)
# One setting for the committed reports and the CI gate that compares against them.
REPORT_FLAGS := --budget standard --samples 128 --seed 0 --threads 1 --quiet
# `make reports` and `make gate-zoo` scan the models side by side, one process per CPU this make
# may use (at most 8), each on one thread: the results do not depend on it, and xargs fails the
# recipe (exit 123) when any scan fails. JOBS=1 runs them one after the other.
JOBS ?= $(shell $(PYTHON) -c "import os; print(max(1, min(8, len(os.sched_getaffinity(0)))))")
# Ends such a side-by-side scan (`out=$$(scan ... 2>&1);` before it): its output is printed at
# once, every line prefixed with the model's name (side by side, the lines would interleave and
# not say whose they are), and its exit status kept.
PRINT_PREFIXED = rc=$$?; printf "%s\n" "$$out" | sed "s|^|{}: |"; exit $$rc
# The CI gate: today the four base models and the adversarially trained CNN (its robust accuracy
# is what it is for; its scan is the longest of the gate). fraud-mlp-at's figures are in reports/.
DEFENSES := squeeze-bits,median-filter,defense-gan,smoothing,adversarial-training=zoo/cnn-digits-at/model.pt

.PHONY: install demo test test-all browser zoo reports gate-zoo bench bench-attacks bench-discard bench-libraries clean

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
	$(AUDIT) scan zoo/cnn-digits/model.pt --out out/demo --budget quick --samples 128 --threads 1
	@echo "open out/demo/report.html; results in out/demo/results.json"

# Headless Chromium for the browser tests (Debian packages; never a downloaded browser).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "browser tests need /usr/bin/chromium (apt-get install chromium chromium-driver)"; fi; \
	fi

# The default suite leaves out tests marked slow (retraining the LSTM and the GAN, ~6 min).
test: install browser
	$(PY) -m pytest -q -m "not slow"

test-all: install browser
	$(PY) -m pytest -q

# Retrain every zoo model from its recipe, each after the models it depends on (cnn-digits
# before the GAN, whose evaluation it judges, and before cnn-digits-at). One thread each.
zoo: install
	for m in $(ZOO); do $(AUDIT) zoo train $$m --quiet || exit 1; done

# Regenerate the zoo's committed reports (results.json, report.html, summary.md, junit.xml).
reports: install
	printf '%s\n' $(ZOO) | xargs -P $(JOBS) -I{} sh -c \
	  'extra=""; [ {} = cnn-digits ] && extra="--defense $(DEFENSES)"; \
	   out=$$($(AUDIT) scan zoo/{}/model.pt --out reports/{} $(REPORT_FLAGS) $$extra 2>&1); $(PRINT_PREFIXED)'

# Dogfood the gate: scan every zoo model as `make reports` does and gate it with the committed
# policy against the committed results (paired regression test on the per-sample records).
gate-zoo: install
	printf '%s\n' $(ZOO_GATE) | xargs -P $(JOBS) -I{} sh -c \
	  'out=$$($(AUDIT) scan zoo/{}/model.pt --out out/gate/{} $(REPORT_FLAGS) --no-report \
	     --gate --policy auditkit.toml --baseline reports/{}/results.json 2>&1); $(PRINT_PREFIXED)'

bench: install
	$(PY) bench/scan.py --threads 1

# Benchmark-only packages (torchattacks pins an old requests that breaks streamlit) live in
# their own venv.
BENCH_VENV ?= .venv-bench
$(BENCH_VENV)/.installed: bench/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BENCH_VENV)/bin/pip install -q -r bench/requirements.txt
	$(BENCH_VENV)/bin/pip install -q --no-deps -e .
	touch $@

# standard vs thorough vs an AutoAttack cascade (issue 15); the library comparison of PGD.
bench-attacks: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/attacks.py --threads 1 --radii --json out/bench-attacks.json

# What the near runs' discarding loses and saves (issue 15; main venv).
bench-discard: install
	$(PY) bench/discard.py --threads 1 --json out/bench-discard.json

bench-libraries: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/libraries.py --threads 1 --profile

clean:
	rm -rf out .pytest_cache
