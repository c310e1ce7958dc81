"""A data-loader worker killed (SIGKILL, the OOM killer) or stuck past dataset.timeout_s:
one line naming the worker and dataset.num_workers, exit 5 (WorkerLostError).

The trainer iterates batches through `watch_workers`; run.py then writes a mid-epoch
checkpoint when the main process still can (the last finished optimizer step), so
`hpml train resume=<run>` continues from there."""
from __future__ import annotations

import re
from typing import Iterator

from hpml_bench.errors import WorkerLostError


def _num_workers(loader) -> int:
    return getattr(getattr(loader, "loader", loader), "num_workers", 0)


def worker_lost(exc: BaseException, loader) -> WorkerLostError | None:
    """The one-line error for a lost worker, or None when `exc` is something else."""
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


def save_after_lost_worker(trainer, strategy, checkpoint, run_dir, exc: WorkerLostError) -> WorkerLostError:
    """One process: a mid-epoch checkpoint at the last optimizer step, named in the line.
    (Several ranks: the others wait in a collective; their launcher ends them.)"""
    epoch, done = trainer.position
    if strategy.world_size > 1 or done == 0 or trainer.stopped_at:
        return exc
    from hpml_bench.runfolder import shown

    trainer.finite.check(trainer, epoch, done - 1)  # never a checkpoint past an unread flag
    trainer.stopped_at = (epoch, done)
    strategy.save_checkpoint(checkpoint, trainer.state_dict())
    return WorkerLostError(f"{exc}; checkpoint {shown(checkpoint)} saved at epoch {epoch + 1} step {done}: "
                           f"resume with: hpml train resume={shown(run_dir)}")


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
