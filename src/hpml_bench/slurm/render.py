"""Fill a template of templates/ from a SlurmConfig and a train command."""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from hpml_bench.config.search_path import config_dir_args
from hpml_bench.errors import HpmlError
from hpml_bench.slurm.config import SlurmConfig, tasks_per_node

TEMPLATES = Path(__file__).parent / "templates"

# The run folder is runs/<job id>-<suffix>. The suffix is made at the job's first start and
# reused when SLURM requeues it (same job id, SLURM_RESTART_COUNT>0), so a requeued job finds
# its own checkpoint; job ids start again at 1 when a cluster's state is wiped, and the suffix
# keeps such a job out of an old run's folder. Then the requeue, which the script does itself.
RUN_FOLDER = """\
# runs/ lies in the submit folder, which hpml assumes is on storage every node sees (a shared
# /scratch or home); a rank whose node cannot see the run folder stops with one line.
mkdir -p runs
marker="runs/.slurm-job-${SLURM_JOB_ID}"
if [ -n "${HPML_CONTINUES:-}" ]; then  # a follow-up job: this script submitted it to go on with that run
  echo "$HPML_CONTINUES" > "$marker"
elif [ "${SLURM_RESTART_COUNT:-0}" -eq 0 ] || [ ! -s "$marker" ]; then
  echo "${SLURM_JOB_ID}-$(date +%Y%m%d-%H%M%S)-${RANDOM}" > "$marker"
fi
export HPML_RUN_ID=$(cat "$marker")
echo "hpml run folder: runs/$HPML_RUN_ID (restart ${SLURM_RESTART_COUNT:-0})"
# The requeue signal: hpml checkpoints, leaves this file and exits 75 (EX_TEMPFAIL; 0 under
# torchrun, whose agent would restart on 75). The job is requeued here, after srun returns: on
# the host, where scontrol is (in a container it often is not), and only once every task has
# left the checkpoint's barrier (a task that requeued the job ended the others inside it).
export HPML_REQUEUE_FILE="runs/.slurm-job-${SLURM_JOB_ID}.requeue"
rm -f "$HPML_REQUEUE_FILE"
requeue_if_asked() {  # <the step's exit status> <this script's arguments>
  local status=$1 job next
  shift
  if [ ! -e "$HPML_REQUEUE_FILE" ] && [ "$status" -ne 75 ]; then exit "$status"; fi
  rm -f "$HPML_REQUEUE_FILE"
  job=${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID:-}}
  job=${job:-$SLURM_JOB_ID}
  echo "hpml: requeueing SLURM job $job ($(date +%H:%M:%S.%6N))"
  scontrol requeue "$job" && exit 0
  # Not requeueable (sbatch --no-requeue, the partition's rules): a new job goes on with the
  # run once this one ends; this job's SLURM_* variables (but SLURM_CONF) stay out of its environment.
  if next=$(env $(compgen -e | grep '^SLURM_' | grep -vx SLURM_CONF | sed 's/^/-u /') HPML_CONTINUES="$HPML_RUN_ID" \\
            sbatch --parsable --dependency=afterany:"$SLURM_JOB_ID" "$0" "$@"); then
    echo "hpml: job $job cannot be requeued; job ${next%%;*} goes on with runs/$HPML_RUN_ID"
    exit 0
  fi
  echo "hpml: job $job could neither be requeued nor followed up; resume with: hpml train resume=runs/$HPML_RUN_ID"
  exit 75
}"""


def template_name(strategy: str, nodes: int, launcher: str = "srun") -> str:
    """single | dp | ddp | ddp_multinode | ddp_torchrun | pipe (fsdp runs as ddp does: one task
    per GPU); launcher=torchrun: ddp_torchrun for every multi-process strategy."""
    if launcher == "torchrun":
        return "ddp_torchrun"
    if strategy == "pipe" and nodes > 1:  # one stage per task, across nodes: the multi-node rendezvous
        return "ddp_multinode"
    if strategy in ("ddp", "fsdp"):
        return "ddp_multinode" if nodes > 1 else "ddp"
    return strategy


def _signal_name(s: SlurmConfig) -> str:
    """slurm.signal as SLURM and the shell spell it: 'SIGUSR1' / 'usr1' -> 'USR1'."""
    return s.signal.upper().removeprefix("SIG")


def sbatch_lines(s: SlurmConfig, strategy: str) -> str:
    tasks, cpus = tasks_per_node(s, strategy), s.cpus_per_task
    if s.launcher == "torchrun":  # one task per node (the agent), with the CPUs of all its workers
        tasks, cpus = 1, s.cpus_per_task * tasks
    options = [f"--job-name={s.job_name}", f"--nodes={s.nodes}", f"--ntasks-per-node={tasks}",
               f"--cpus-per-task={cpus}", f"--mem={s.mem}", f"--time={s.time}"]
    options += [f"--gres=gpu:{s.gpus_per_node}"] if s.gpus_per_node else []
    options += [f"--{key}={value}" for key, value in (("partition", s.partition), ("account", s.account), ("qos", s.qos)) if value]
    # Signal the job steps (hpml under srun) before the time limit; --requeue lets hpml requeue it;
    # append: a requeued job's log continues the first start's.
    options += [f"--signal={_signal_name(s)}@{s.signal_lead_s}", "--requeue",
                f"--output={s.out_dir}/%x-%j.out", "--open-mode=append", *s.extra]
    return "\n".join(f"#SBATCH {_sbatch_quoted(option)}" for option in options)


def _sbatch_quoted(option: str) -> str:
    """`--key=value` with the value quoted where it must be: sbatch splits an #SBATCH line at
    spaces and ends it at an unquoted `#` (it reads shell quotes), so `slurm.job_name='my job'`
    would become --job-name=my and a stray argument."""
    key, eq, value = option.partition("=")
    return f"{key}={shlex.quote(value)}" if eq else option


_EXEC_ARGS = 'exec "$@"'


def _in_container(s: SlurmConfig, command: str, prelude: str = "") -> str:
    """`command` as a task starts it: in the Greene container, and after shell `prelude` if any."""
    if s.container == "greene":
        # The overlay holds the Python environment (read-only, so many tasks can share it);
        # `exec` makes hpml the process SLURM's signals reach.
        inner = f"source {s.env_script}; {prelude}{_EXEC_ARGS}"
        return f"singularity exec --nv --overlay {s.overlay}:ro {s.image} /bin/bash -c {shlex.quote(inner)} bash {command}"
    if prelude:
        return f"/bin/bash -c {shlex.quote(prelude + _EXEC_ARGS)} bash {command}"  # bash: the script's $0
    return command


# Signals torchrun's agent handles itself (it stops its workers and exits).
_AGENT_HANDLES = {"TERM", "INT", "HUP", "QUIT"}


def _agent_ignores(s: SlurmConfig) -> str:
    """Shell that makes torchrun's agent ignore the requeue signal.

    SLURM signals every process of a step, the agent too; torchrun has no handler for USR1 or
    USR2, so their default action kills the agent at once, and SLURM tears the step down while
    its workers are still writing the checkpoint. Ignored in the agent, the signal still
    reaches the workers, and hpml installs its own handler there.
    """
    signal = _signal_name(s)
    return "" if signal in _AGENT_HANDLES else f'trap "" {signal}; '


def hpml_command(s: SlurmConfig) -> str:
    """How a task starts `hpml train`, inside the container for container=greene."""
    return _in_container(s, f"{s.command or f'{shlex.quote(sys.executable)} -m hpml_bench'} train")


def torchrun_command(s: SlurmConfig) -> tuple[str, str]:
    """(how a node's task starts torchrun, what torchrun starts per worker) for launcher=torchrun."""
    if s.command is None:  # this Python's torchrun and hpml
        return (_in_container(s, f"{shlex.quote(sys.executable)} -m torch.distributed.run", _agent_ignores(s)),
                "-m hpml_bench train")
    return _in_container(s, "torchrun", _agent_ignores(s)), f"--no-python {s.command} train"


def render(s: SlurmConfig, strategy: str, overrides: list[str], script: str) -> str:
    """The sbatch script's text for this job."""
    extra = [] if _signal_name(s) == "USR1" else [f"trainer.requeue_signal={s.signal}"]
    torchrun, worker = torchrun_command(s)
    values = {
        "script": script,
        "sbatch": sbatch_lines(s, strategy),
        "run_folder": RUN_FOLDER,
        "hpml": worker if s.launcher == "torchrun" else hpml_command(s),
        "torchrun": torchrun,
        "nproc": str(tasks_per_node(s, strategy)),
        "max_restarts": str(s.max_restarts),
        "strategy": strategy,
        "nodes": str(s.nodes),
        # the user's config folder, absolute, so the job composes what this command line composed
        "overrides": " ".join(shlex.quote(o) for o in [*config_dir_args(), *overrides, *extra]),
        "tasks_per_node": str(tasks_per_node(s, strategy)),
    }
    text = (TEMPLATES / f"{template_name(strategy, s.nodes, s.launcher)}.sbatch").read_text()

    def fill(match: re.Match) -> str:
        if match.group(1) not in values:
            raise HpmlError(f"template {script}: unknown placeholder {match.group(0)}")
        return values[match.group(1)]

    return re.sub(r"\{\{(\w+)\}\}", fill, text).replace("  \"$@\"", " \"$@\"")
