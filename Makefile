# Set-up and entry points. `make demo` and `make test` each do all the set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: demo test test-all bench install clean

# Install torch first: a bare torch requirement with no torch installed pulls a multi-GB CUDA build.
$(VENV)/.installed: setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[all,test]"
	$(BIN)/python -m pip check
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/facenas demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
