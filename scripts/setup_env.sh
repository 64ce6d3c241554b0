#!/usr/bin/env bash
# Creates $VENV and installs cxr-reid (editable, with the dev extra) into it,
# without ever letting pip replace the torch build that fits this machine:
#  - if the base interpreter already has torch (e.g. a GPU machine with its own
#    CUDA build), the venv sees it through --system-site-packages;
#  - otherwise $TORCH_SPEC is installed first (here: the on-disk 2.13.0 CPU wheel);
#  - then everything else is installed with torch pinned to what is present,
#    so no dependency range can pull a newer torch and its CUDA packages.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_PIP_ARGS=${TORCH_PIP_ARGS:-}

if [ ! -x "$VENV/bin/python" ]; then
  if "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    echo "[setup] base interpreter has torch $("$PYTHON" -c 'import torch; print(torch.__version__)'); reusing it"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
# pip, quiet, with the machine's harmless "find-links location is ignored" warnings
# filtered out; pip's own exit status is kept.
pip_q() {
  local log rc=0
  log=$(mktemp)
  "$PY" -m pip install --disable-pip-version-check -q "$@" >"$log" 2>&1 || rc=$?
  grep -v "is ignored: it is neither a file nor a directory" "$log" || true
  rm -f "$log"
  return $rc
}

if ! "$PY" -W ignore -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  pip_q $TORCH_PIP_ARGS "$TORCH_SPEC"
fi
"$PY" -W ignore -c "import torch" || { echo "[setup] torch failed to install"; exit 1; }
CONSTRAINTS="$VENV/torch-constraint.txt"
"$PY" -W ignore -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > "$CONSTRAINTS"
echo "[setup] installing cxr-reid with $(cat "$CONSTRAINTS")"
pip_q -c "$CONSTRAINTS" -e ".[dev]"
"$PY" -c "import reid_core, timm, pydicom, faiss, streamlit" || { echo "[setup] import check failed"; exit 1; }

# Headless Chromium for the browser end-to-end test (tests/test_browser_e2e.py): the distribution's
# package, driven by Playwright through executable_path (Playwright never downloads a browser).
# Installed only as root with apt-get (CI); anywhere else, or if apt fails, that test skips and says why.
# CXR_REID_SKIP_CHROMIUM=1 skips this step.
if [ "${CXR_REID_SKIP_CHROMIUM:-0}" != 1 ] && ! command -v chromium >/dev/null 2>&1 \
    && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing the Debian chromium package for the browser test (apt-get)"
    apt_log=$(mktemp)
    apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >>"$apt_log" 2>&1; }
    if ! apt_install; then  # package lists missing or stale (a fresh container): refresh once, retry
      DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$apt_log" 2>&1 || true
      apt_install || { tail -n 5 "$apt_log"; echo "[setup] chromium not installed; the browser test will be skipped"; }
    fi
    rm -f "$apt_log"
  else
    echo "[setup] no chromium: the browser test will be skipped (Debian/Ubuntu: sudo apt-get install chromium)"
  fi
fi
echo "[setup] ready: $VENV"
