# The two commands a newcomer needs: `make test` and `make demo`. `make test-fast` skips the
# slow tests (training, full exports) for the inner loop; `make lint` is ruff + mypy.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
# mypy reads a `ser_edge` package assembled from symlinks: setuptools maps runtime/ and export/
# into ser_edge at install time (pyproject's package-dir), which mypy cannot follow.
TYPECHECK := build/typecheck

.PHONY: test test-fast lint demo venv test-arm bench clean

# CPU torch: `torch==2.13.0` (pinned in pyproject's [train] extra) resolves to the local CPU
# wheel here; it is installed first so nothing can pull the multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[train,tflite,tflite-export,dev]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP) lint
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow"

# Both checks always run (all problems in one go); the target fails if either found one.
lint: $(STAMP)
	@rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/ser_edge
	@ln -s $(CURDIR)/ser_edge/* $(TYPECHECK)/ser_edge/
	@ln -s $(CURDIR)/runtime $(TYPECHECK)/ser_edge/runtime
	@ln -s $(CURDIR)/export $(TYPECHECK)/ser_edge/export
	@status=0; \
	echo "ruff check ."; $(PY) -m ruff check --output-format concise . || status=1; \
	echo "mypy -p ser_edge.runtime -p ser_edge.export"; \
	MYPYPATH=$(TYPECHECK) $(PY) -m mypy -p ser_edge.runtime -p ser_edge.export \
		| sed -e 's#^$(TYPECHECK)/ser_edge/\(runtime\|export\)/#\1/#' -e 's#^$(TYPECHECK)/##'; \
	[ "$${PIPESTATUS[0]}" = 0 ] || status=1; \
	exit $$status

demo: $(STAMP)
	bash scripts/demo.sh $(DEMO_DIR)

test-arm: $(STAMP)
	bash scripts/arm/test_arm.sh

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) runs build *.egg-info
