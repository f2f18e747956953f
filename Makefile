# ctrbench — install, demo, tests and the papers' reproduction targets.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
RESULTS ?= results
# torch==2.13.0 resolves to the CPU build here; an existing torch (e.g. a CUDA build) is kept as is.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test test-fast bench-build

install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[test]" --config-settings editable_mode=compat

demo: install
	ctrbench run --expid LR_demo --results $(RESULTS)/demo_runs.jsonl
	ctrbench run --expid DNN_demo --results $(RESULTS)/demo_runs.jsonl
	ctrbench run --expid DCN_demo --results $(RESULTS)/demo_runs.jsonl
	ctrbench report --results $(RESULTS)/demo_runs.jsonl --baseline LR --datasets synth_criteo \
		--models LR,DNN,DCN --out $(RESULTS)/demo_table.md

test: install
	$(PYTHON) -m pytest -n 2 tests

test-fast:
	$(PYTHON) -m pytest -n 2 tests -m "not slow"

bench-build: install
	$(PYTHON) scripts/bench_build.py
