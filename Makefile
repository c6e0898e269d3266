# Everything runs from .venv at the repo root. torch is installed first and pinned so pip takes the
# CPU wheel instead of a multi-GB CUDA build.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: demo lint test test-slow bench bench-all clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tistudio.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench tools

# PYTEST_ARGS passes options through, e.g. `make test PYTEST_ARGS="-n 2"` (pytest-xdist, in the dev extra)
# or `PYTEST_ARGS="-m 'not slow and not e2e'"` for a quick loop without the tests that start processes.
test: $(STAMP) lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) bench/train_step.py

bench-all: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info demo-output
