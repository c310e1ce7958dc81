#!/usr/bin/env bash
# Create .venv (if missing) and install hpml into it; EXTRAS=test adds the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
spec="."
[ -n "${EXTRAS:-}" ] && spec=".[${EXTRAS}]"
pip_quiet() {  # pip's log only when it fails (this machine's index prints many warnings)
  if ! .venv/bin/pip install --disable-pip-version-check "$@" > .venv/pip.log 2>&1; then
    cat .venv/pip.log; exit 1
  fi
}
# torch/torchvision pinned to the builds this machine serves from its local wheel index.
pip_quiet "torch==2.14.1" "torchvision==0.29.1"
pip_quiet -e "$spec"
.venv/bin/python -c "import hpml_bench, torch; print('hpml installed; torch', torch.__version__)"
