# Two commands: `make demo` (the app on the embedded phantom) and `make test`; `make fuzz` is the long
# loader fuzz (pydicom corpora, a file zoo and 5,100 DICOM mutants; ~1 min of CPU, see BENCHMARKS.md).
# Both create .venv on first use and install the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build to install when the interpreter has none. Here the 2.13.0 CPU
# wheel is on disk; elsewhere add e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test fuzz clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup_env.sh
	@TORCH_SPEC="$(TORCH_SPEC)" TORCH_PIP_ARGS="$(TORCH_PIP_ARGS)" PYTHON="$(PYTHON)" VENV="$(VENV)" bash scripts/setup_env.sh
	@touch $(STAMP)

demo: setup
	$(PY) -m reid_core.cli demo

test: setup
	$(PY) -m pytest -q

fuzz: setup
	OMP_NUM_THREADS=1 $(PY) scripts/fuzz_loaders.py

clean-venv:
	rm -rf $(VENV)
