#!/usr/bin/env bash
# Run tests several times on a busy machine: the races a quiet machine hides (a signal that lands
# mid-step, a node that is late to a barrier) show up when the CPUs are contended, as they are on a
# cluster. A test that passes quietly and fails here is a race in hpml, not a flake.
#
#   scripts/busy-check.sh [-n RUNS] [-l LOOPS] [pytest arguments]
#
# Default: 5 runs of the fault, preemption and multi-node tests with 2 busy loops beside them
# (stress-ng --cpu when installed, else shell loops); prints how many runs passed and exits 1
# unless all did. Cluster tests take /tmp/hpml-cluster.lock (the local cluster is shared).
# The loops run at this script's niceness: `nice -n 10 scripts/busy-check.sh` contends with its
# own tests, not with everything else on a shared machine.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS=5 LOOPS=2
while getopts "n:l:" opt; do
  case $opt in n) RUNS=$OPTARG ;; l) LOOPS=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || set -- tests/test_faults_workers.py tests/test_oom_ranks.py tests/test_worker_exit.py tests/test_preempt.py \
  tests/test_slurm_multinode.py tests/test_slurm_cluster.py
export WANDB_MODE=offline WANDB_SILENT=true
PY=${PYTHON:-.venv/bin/python}

hogs=()
stop_hogs() { for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null; done; wait 2>/dev/null; }
trap stop_hogs EXIT
if command -v stress-ng >/dev/null; then
  stress-ng --cpu "$LOOPS" --quiet & hogs+=($!)
else
  for _ in $(seq "$LOOPS"); do (while :; do :; done) & hogs+=($!); done
fi

lock=()  # the local cluster is shared: its tests run one session at a time
[[ "$*" == *slurm* ]] && lock=(flock /tmp/hpml-cluster.lock)
passed=0
for run in $(seq "$RUNS"); do
  start=$SECONDS
  if "${lock[@]}" "$PY" -m pytest -q -p no:cacheprovider "$@"; then
    passed=$((passed + 1)); verdict=passed
  else
    verdict=FAILED
  fi
  echo "busy-check: run $run/$RUNS $verdict in $((SECONDS - start)) s ($LOOPS busy loops)"
done
echo "busy-check: $passed of $RUNS runs passed with $LOOPS busy loops beside them: $*"
[ "$passed" -eq "$RUNS" ]
