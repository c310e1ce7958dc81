#!/usr/bin/env bash
# Install hpml with its test extras into .venv, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test,all,docs bash scripts/install.sh
export WANDB_MODE=offline WANDB_SILENT=true
# --durations: the slowest tests, named in every CI log (the suite must stay well inside CI's limit)
exec .venv/bin/python -m pytest -q --durations=25 "$@"
