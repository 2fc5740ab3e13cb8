# The two commands a newcomer needs: `make test` and `make demo`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: test demo venv test-arm bench clean

# CPU torch: `torch==2.13.0` (pinned in pyproject's [train] extra) resolves to the local CPU
# wheel here; it is installed first so nothing can pull the multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[train,tflite,tflite-export,dev]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

demo: $(STAMP)
	bash scripts/demo.sh $(DEMO_DIR)

test-arm: $(STAMP)
	bash scripts/arm/test_arm.sh

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) runs build *.egg-info
