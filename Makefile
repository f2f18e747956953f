# ctrbench — install, demo, tests and the papers' reproduction targets.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
RESULTS ?= results
# torch==2.13.0 resolves to the CPU build here; an existing torch (e.g. a CUDA build) is kept as is.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test test-install test-fast test-tables lint bench-build calibrate-smoothl0 reproduce-table4 reproduce-ibnet reproduce-tf4ctr \
	reproduce-dlf reproduce-sfg reproduce-maskfusion

# make reproduce-<paper> [SMOKE=1] [DATASETS=a,b] [MODELS=m,n] [SEEDS=1,2,3] [GPU=0]
REPRODUCE = ctrbench reproduce $(if $(SMOKE),--smoke) $(if $(DATASETS),--datasets $(DATASETS)) \
	$(if $(MODELS),--models $(MODELS)) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(GPU),--gpu $(GPU)) \
	--out-dir $(RESULTS)
reproduce_all = set -e; for f in $(1); do $(REPRODUCE) $$f; done

install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[test]" --config-settings editable_mode=compat

demo: install
	ctrbench run --expid LR_demo --results $(RESULTS)/demo_runs.jsonl
	ctrbench run --expid DNN_demo --results $(RESULTS)/demo_runs.jsonl
	ctrbench run --expid DCN_demo --results $(RESULTS)/demo_runs.jsonl
	ctrbench report --results $(RESULTS)/demo_runs.jsonl --baseline LR --datasets synth_criteo \
		--models LR,DNN,DCN --out $(RESULTS)/demo_table.md

# The suite, under 5 minutes on 2 CPUs: of each paper table one cell trains for one epoch and every
# cell is checked without epochs (resolves, builds its model, takes one step); worksteal shares the
# slow ones out as the workers free up.
test: install
	$(PYTHON) -m pytest -n 2 --dist worksteal tests -m "not browser"

# the ordinary installs in a fresh venv (pip install -e ., -e '.[tune]', pip install .), then ctrbench
# from another folder: a few minutes, most of it pip
test-install: install
	CTRBENCH_INSTALL_TEST=1 $(PYTHON) -m pytest -p no:xdist tests/test_install.py

# every registered model trained a few steps under torch.compile (inductor on the CPU) against eager
.PHONY: test-compile
test-compile: install
	CTRBENCH_COMPILE_TEST=1 $(PYTHON) -m pytest -n 2 --dist worksteal -m compile tests/test_compile_bf16.py

# the results board in headless Chromium: Debian's chromium and chromium-driver, installed when missing
.PHONY: test-browser
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-browser: install
	@command -v chromedriver >/dev/null && { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; } \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver; }
	$(PYTHON) -m pytest -p no:xdist -m browser tests/test_board_browser.py

# without the end-to-end tests marked slow (the table smokes and checks among them)
test-fast:
	$(PYTHON) -m pytest -n 2 --dist worksteal tests -m "not slow and not browser"

# every row of every column of every paper table trained for one epoch at the table's own settings
test-tables: install
	CTRBENCH_FULL_SMOKE=1 $(PYTHON) -m pytest -n 2 --dist worksteal tests/test_reproduce.py

# ruff (configured in pyproject.toml): lint rules and the formatter's layout, line length 110
lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

# the builder on Kaggle Criteo's cardinality profile (4.8M rows) against the bare polars floor
bench-build: install
	$(PYTHON) scripts/bench_build.py --profile criteo --rows 4800000 --methods ctrbench,floor

# SmoothL0's lambda on the synthetic Criteo-like set: pruned share per lambda over the first 6,000 steps
calibrate-smoothl0: install
	$(PYTHON) scripts/calibrate_smoothl0.py --expid MaskFusion_DCN_smoothl0_synth --lambdas 0.1,0.2,0.3

reproduce-table4: install
	$(REPRODUCE) results/targets/ibnet_table4.yaml

reproduce-ibnet: install
	$(call reproduce_all,$(wildcard results/targets/ibnet_*.yaml))

reproduce-tf4ctr: install
	$(call reproduce_all,$(wildcard results/targets/tf4ctr_*.yaml))

reproduce-dlf: install
	$(call reproduce_all,$(wildcard results/targets/dlf_*.yaml))

reproduce-sfg: install
	$(call reproduce_all,$(wildcard results/targets/sfg_*.yaml))

reproduce-maskfusion: install
	$(call reproduce_all,$(wildcard results/targets/maskfusion_*.yaml))
