"""A data-loader worker killed (SIGKILL, the OOM killer) or stuck past dataset.timeout_s:
one line naming the worker and dataset.num_workers, exit 5 (WorkerLostError).

The trainer iterates batches through `watch_workers`; the composition root (train/run.py) then
has the trainer stop at its last finished optimizer step and saves that mid-epoch checkpoint
when the main process still can, so `hpml train resume=<run>` continues from there.

Where the loss is found matters. torch's SIGCHLD handler raises from wherever the main thread
happens to be when a worker dies: inside a step after the optimizer step but before the
trainer recorded it (the checkpoint then said step k-1 and held the weights of step k), inside
a callback, inside the checkpoint write. A busy machine moves that moment around. So while a
run trains, `quiet_sigchld` sets torch's handler aside, and `watch_workers` makes the same
check (torch's `_error_if_any_worker_fails`, a waitid per worker) at each batch boundary: the
one place where the trainer's position and the weights agree."""
from __future__ import annotations

import contextlib
import re
import signal
import threading
from pathlib import Path
from typing import Iterator, Optional

from torch.utils.data._utils import signal_handling

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
    """The line, naming the mid-epoch checkpoint saved at (epoch, step) when there is one, else
    the last epoch's checkpoint when there is one."""
    if stopped_at is None:
        if not checkpoint.is_file():
            return exc
        return WorkerLostError(f"{exc}; the last checkpoint {shown(checkpoint)} resumes it: "
                               f"hpml train resume={shown(Path(run_dir))}")
    epoch, done = stopped_at
    return WorkerLostError(f"{exc}; checkpoint {shown(checkpoint)} saved at epoch {epoch + 1} step {done}: "
                           f"resume with: hpml train resume={shown(Path(run_dir))}")


def watch_workers(batches: Iterator, loader) -> Iterator:
    """`batches`, with a lost worker found before each batch is handed out (after the previous
    step ended) and its RuntimeError turned into WorkerLostError."""
    while True:
        try:
            _check_workers()  # died during the last step: say so now, not 5 s into the next wait
            batch = next(batches)  # torch's own check: a worker gone while this batch was awaited
            _check_workers()
        except StopIteration:
            return
        except RuntimeError as exc:
            lost = worker_lost(exc, loader)
            if lost is None:
                raise
            raise lost from exc
        yield batch


def _check_workers() -> None:
    """torch's check of the live loaders' workers (RuntimeError naming a dead one)."""
    if _SIGCHLD is not None:
        signal_handling._error_if_any_worker_fails()


_SIGCHLD = getattr(signal, "SIGCHLD", None)  # none on Windows (torch polls there)


@contextlib.contextmanager
def quiet_sigchld() -> Iterator[None]:
    """While the body runs, a dying loader worker raises nothing asynchronously; `watch_workers`
    finds it at the next batch boundary instead (see the module's note)."""
    if _SIGCHLD is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    # torch installs its handler once per process, at the first multi-worker iterator; installed
    # now, it is not installed again over ours when the epoch's iterator starts.
    signal_handling._set_SIGCHLD_handler()
    previous = signal.signal(_SIGCHLD, signal.SIG_DFL)  # SIG_DFL: ignored, children not reaped
    try:
        yield
    finally:
        signal.signal(_SIGCHLD, previous)
