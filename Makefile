# Two commands: `make demo` (the app on the embedded phantom) and `make test`.
# Both create .venv on first use and install the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build to install when the interpreter has none. Here the 2.13.0 CPU
# wheel is on disk; elsewhere add e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup_env.sh
	@TORCH_SPEC="$(TORCH_SPEC)" TORCH_PIP_ARGS="$(TORCH_PIP_ARGS)" PYTHON="$(PYTHON)" VENV="$(VENV)" bash scripts/setup_env.sh
	@touch $(STAMP)

demo: setup
	$(PY) -m reid_core.cli demo

test: setup
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
