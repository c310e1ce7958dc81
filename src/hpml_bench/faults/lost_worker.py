"""A data-loader worker killed (SIGKILL, the OOM killer) or stuck past dataset.timeout_s:
one line naming the worker and dataset.num_workers, exit 5 (WorkerLostError).

The trainer iterates batches through `watch_workers`; the composition root (train/run.py) then
has the trainer stop at its last finished optimizer step and saves that mid-epoch checkpoint
when the main process still can, so `hpml train resume=<run>` continues from there."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Optional

from hpml_bench.errors import WorkerLostError
from hpml_bench.runfolder.writes import shown


def _num_workers(loader) -> int:
    return getattr(getattr(loader, "loader", loader), "num_workers", 0)


def worker_lost(exc: BaseException, loader) -> WorkerLostError | None:
    """The one-line error for a lost worker, or None when `exc` is something else."""
    if isinstance(exc, WorkerLostError):
        return exc
    text = str(exc)
    n = _num_workers(loader)
    killed = re.search(r"DataLoader worker \(pid(?:\(s\))? ([\d, ]+)\) (?:is killed by signal: ([^.]+)|exited unexpectedly)", text)
    if killed:
        how = f"was killed ({killed.group(2)})" if killed.group(2) else "exited unexpectedly"
        return WorkerLostError(f"data-loader worker (pid {killed.group(1).strip()}) {how}, with dataset.num_workers={n}: "
                               f"the OOM killer (check `dmesg`; lower dataset.num_workers or dataset.batch_size) or a kill")
    stuck = re.search(r"DataLoader timed out after ([\d.]+) seconds", text)
    if stuck:
        return WorkerLostError(f"a data-loader worker gave no batch for {stuck.group(1)} s (dataset.timeout_s), with "
                               f"dataset.num_workers={n}: a stuck read (network file system?) or a hung worker")
    return None


def with_checkpoint(exc: WorkerLostError, stopped_at: Optional[tuple[int, int]], checkpoint: Path,
                    run_dir) -> WorkerLostError:
    """The line, naming the mid-epoch checkpoint saved at (epoch, step) when there is one."""
    if stopped_at is None:
        return exc
    epoch, done = stopped_at
    return WorkerLostError(f"{exc}; checkpoint {shown(checkpoint)} saved at epoch {epoch + 1} step {done}: "
                           f"resume with: hpml train resume={shown(Path(run_dir))}")


def watch_workers(batches: Iterator, loader) -> Iterator:
    """`batches`, with a lost worker's RuntimeError turned into WorkerLostError."""
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except RuntimeError as exc:
            lost = worker_lost(exc, loader)
            if lost is None:
                raise
            raise lost from exc
        yield batch
