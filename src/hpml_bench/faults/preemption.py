"""Preemption-safe training: a signal becomes a stop request that the trainer asks at step
boundaries; the ranks agree through the strategy; rank 0 then writes a mid-epoch checkpoint.

Which signal means what:
- the requeue signal (`trainer.requeue_signal`, USR1 by default; `#SBATCH --signal=USR1@90`
  or `scancel --signal=USR1 <job>`): checkpoint, then exit 75 (EX_TEMPFAIL: "start me again").
  hpml never requeues a job itself: the batch script does, on the host, after every task has
  ended (see `ask_for_requeue`).
- SIGTERM (time limit, `scancel`, a preempting scheduler that requeues by itself): checkpoint,
  no requeue (a user's scancel must not resurrect the job), exit 143.
- SIGINT (Ctrl-C): checkpoint, exit 130.
A second signal ends the process at once (a launcher's SIGTERM then SIGKILL, a second Ctrl-C).
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from hpml_bench.errors import HpmlError
from hpml_bench.runfolder import RunFolder
from hpml_bench.runfolder.writes import atomic_write_text, shown

REQUEUE_EXIT = 75  # EX_TEMPFAIL (sysexits.h): stopped with a checkpoint, start me again
# The batch script names the file by which rank 0 asks it for the requeue (slurm/render.py).
REQUEUE_FILE_ENV = "HPML_REQUEUE_FILE"
# A follow-up job (submitted where a job cannot be requeued) names the run it continues.
CONTINUES_ENV = "HPML_CONTINUES"
# hpml's own launcher (strategy.nproc_per_node) names its runs so (strategies/launch.py).
OWN_LAUNCHER_RUN_PREFIX = "hpml-"
# hpml's own launcher names a file for the exit code of an agreed stop (strategies/launch.py).
STOP_CODE_FILE_ENV = "HPML_STOP_CODE_FILE"


def signal_number(name: str) -> int:
    """'USR1' / 'SIGUSR1' / '10' -> the signal number (HpmlError for an unknown name)."""
    text = str(name).upper()
    if text.isdigit():
        return int(text)
    try:
        return int(getattr(signal, text if text.startswith("SIG") else f"SIG{text}"))
    except AttributeError:
        raise HpmlError(f"trainer.requeue_signal={name}: not a signal name; use USR1, USR2 or TERM") from None


class NoStop:
    """The stop request of a run that installs no signal handlers (tests, library use)."""

    signum: Optional[int] = None

    def should_stop(self, strategy, step: Optional[int]) -> bool:
        return False


class StopRequest(NoStop):
    """Set by a signal handler; `should_stop` is asked by the trainer at step boundaries.

    On one process it only reads a flag. With several ranks they must stop at the same step,
    so every `check_every` steps (and at each epoch end) they all-reduce one small tensor
    through the strategy: the largest signal number any rank received, 0 for none.
    """

    def __init__(self, requeue_signal: str = "USR1", check_every: int = 1):
        self.requeue_signum = signal_number(requeue_signal)
        self.check_every = max(1, check_every)
        self.signum: Optional[int] = None
        self.received_at: Optional[float] = None  # time.time() of the signal, for the measured latency
        self._previous: dict[int, object] = {}

    def install(self) -> "StopRequest":
        """Handle the requeue signal, SIGTERM and SIGINT (main thread only, as Python requires)."""
        for signum in {self.requeue_signum, signal.SIGTERM, signal.SIGINT}:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def uninstall(self) -> None:
        """The handlers found at install; after a stop for the requeue signal, that signal stays
        ignored: SLURM signals each node's tasks on its own, and on a busy node the same notice
        can arrive after this rank has agreed, saved and let go (its default action would kill
        the process on its way out: "User defined signal 1", a failed step)."""
        for signum, handler in self._previous.items():
            late_notice = signum == self.requeue_signum and self.signum is not None
            signal.signal(signum, signal.SIG_IGN if late_notice else handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # a second signal: the sender does not want to wait
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum, self.received_at = signum, time.time()
        print(f"hpml: got {signal.Signals(signum).name}: saving a checkpoint at the next step boundary",
              file=sys.stderr, flush=True)

    def should_stop(self, strategy, step: Optional[int]) -> bool:
        """True when this run must stop now; `step` None = an epoch boundary (always agreed)."""
        if strategy.world_size == 1:
            return self.signum is not None
        if step is not None and (step + 1) % self.check_every:
            return False
        agreed = int(strategy.reduce(torch.tensor([float(self.signum or 0)]), "max").item())
        if agreed and self.signum is None:  # another rank got the signal: stop the same way
            self.signum = agreed
        return bool(agreed)

    @property
    def requeue(self) -> bool:
        return self.signum == self.requeue_signum

    @property
    def exit_code(self) -> int:
        """REQUEUE_EXIT for the requeue signal (0 under torchrun's agent, which would count a
        non-zero exit as a failure and restart the workers at once), else 128 + the signal."""
        if self.requeue:
            return 0 if under_torchrun() else REQUEUE_EXIT
        return 128 + int(self.signum)


def worker_exit_code(stop: StopRequest, is_main: bool) -> int:
    """The process's exit code after an agreed stop (its checkpoint on disk). Under hpml's own
    launcher every worker exits 0 and rank 0 leaves the code in the launcher's file: the
    elastic agent takes any non-zero exit for a failure and SIGTERMs the workers still running,
    so the rank that left first would kill rank 0 while it still reported the stop."""
    code_file = os.environ.get(STOP_CODE_FILE_ENV)
    if not code_file:
        return stop.exit_code
    if is_main:
        atomic_write_text(Path(code_file), f"{stop.exit_code}\n")
    return 0


def under_torchrun() -> bool:
    """A worker of torchrun's elastic agent (not of hpml's own launcher)."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    return run_id is not None and not run_id.startswith(OWN_LAUNCHER_RUN_PREFIX)


def on_slurm() -> bool:
    return "SLURM_JOB_ID" in os.environ


def restarted() -> bool:
    """A requeued SLURM job or a torchrun restart (--max-restarts): resume if a checkpoint exists."""
    if any(int(os.environ.get(var, "0") or 0) > 0 for var in ("SLURM_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT")):
        return True
    if os.environ.get(CONTINUES_ENV):  # a follow-up job of a job that could not be requeued
        return True
    # torchrun restarts the workers of a node that only saw another node's failure as a
    # membership change, with TORCHELASTIC_RESTART_COUNT still 0. A job's own run folder
    # (HPML_RUN_ID, unique per job: the sbatch script makes it) holding a checkpoint can then
    # only come from an earlier round of this job.
    return int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0) > 0 and "HPML_RUN_ID" in os.environ


def restart_resume(folder: RunFolder) -> Optional[str]:
    """The run folder, when this is a restart and it holds a checkpoint; else None."""
    return str(folder) if restarted() and folder.resumable else None


def ask_for_requeue(stop: StopRequest, stopped_at: tuple[int, int], checkpoint: Path) -> None:
    """Rank 0, once the checkpoint is on disk: leave the batch script's request file, if it named
    one, and say so. The script requeues the job (or submits a follow-up) after srun returns,
    that is after every task has left the checkpoint's barrier; a task that ran `scontrol
    requeue` itself ended the others inside it (gloo: "Connection closed by peer"), and inside
    a container there is often no `scontrol` at all."""
    epoch, step = stopped_at
    request = os.environ.get(REQUEUE_FILE_ENV)
    if request:
        try:
            atomic_write_text(Path(request), f"epoch {epoch + 1} step {step}: {checkpoint}\n")
        except (OSError, HpmlError) as exc:  # the exit code still asks (srun form); the checkpoint is on disk
            print(f"hpml: could not leave the requeue request {request} ({exc}); exit {stop.exit_code} still asks "
                  f"for it", file=sys.stderr, flush=True)
    if on_slurm():
        how = "the batch script requeues the job" if request else "requeue it: scontrol requeue $SLURM_JOB_ID"
        print(f"hpml: exit {stop.exit_code} for the {signal.Signals(stop.signum).name} stop: {how}",
              file=sys.stderr, flush=True)


def report_stop(stop: StopRequest, stopped_at: tuple[int, int], checkpoint: Path, folder: RunFolder) -> None:
    """Rank 0, after the checkpoint is on disk: say where it stopped and how it goes on; for
    the requeue signal, ask for the requeue."""
    epoch, step = stopped_at
    took = time.time() - stop.received_at if stop.received_at else float("nan")
    print(f"hpml: stopped at epoch {epoch + 1} step {step}; checkpoint {checkpoint} written "
          f"{took:.2f} s after the signal", file=sys.stderr, flush=True)
    if stop.requeue:
        ask_for_requeue(stop, stopped_at, checkpoint)
    print(f"resume with: hpml train resume={shown(folder.path)}", flush=True)
