"""`strategy.nproc_per_node=N`: hpml starts N local workers itself (torch's elastic
launcher, as torchrun does), so a workstation user needs no second tool."""
from __future__ import annotations

import os
import signal
import sys
import tempfile
import uuid
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from hpml_bench.faults.preemption import OWN_LAUNCHER_RUN_PREFIX, STOP_CODE_FILE_ENV


def launched_by_hpml_or_torchrun() -> bool:
    """True inside a worker (torchrun, srun, or our own launcher set these)."""
    return "LOCAL_RANK" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("SLURM_NTASKS", 1)) > 1


def launch_workers(nproc: int, train_args: list[str]) -> int:
    """Run `python -m hpml_bench train <train_args>` in nproc processes; their exit code."""
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc,
                          run_id=f"{OWN_LAUNCHER_RUN_PREFIX}{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2)
    # As torchrun does: share the cores instead of each worker taking them all.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    with tempfile.TemporaryDirectory(prefix="hpml-launch-") as tmp:
        # An agreed stop (requeue signal, SIGTERM, Ctrl-C) ends every worker with 0 and rank 0
        # leaves the code here (faults/preemption.worker_exit_code): a non-zero exit would make
        # the agent stop the ranks still finishing.
        code_file = Path(tmp) / "stop-code"
        os.environ[STOP_CODE_FILE_ENV] = str(code_file)
        try:
            elastic_launch(config, sys.executable)("-m", "hpml_bench", "train", *train_args)
        except ChildFailedError as exc:
            return _failed(exc)
        finally:
            os.environ.pop(STOP_CODE_FILE_ENV, None)
        return int(code_file.read_text()) if code_file.exists() else 0


def _failed(exc: ChildFailedError) -> int:
    """Say which worker failed first; the launcher's exit code (2 for a worker's one-line error)."""
    # The cause before its echoes: a rank that crashed (exit 1) over the ranks that then lost
    # it as a peer and said so (exit 2), and those over the ranks the launcher stopped itself
    # (SIGTERM: -15); within a kind, the earliest. Seen in the same monitor round, torch's
    # own choice (the earliest timestamp) often named a stopped rank.
    def kind(code: int) -> int:
        return 2 if code == -signal.SIGTERM else 1 if code == 2 else 0

    rank, failure = min(exc.failures.items(), key=lambda kv: (kind(kv[1].exitcode), kv[1].timestamp, kv[0]))
    # A worker's own `error:` line (or traceback) is already on stderr above this one.
    print(f"error: worker rank {rank} failed with exit code {failure.exitcode}; the others were stopped",
          file=sys.stderr)
    return 2 if failure.exitcode == 2 else 1
