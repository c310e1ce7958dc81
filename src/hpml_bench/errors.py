"""The exceptions hpml reports in one line, their exit codes, and how the CLI reports them.

Exit codes (scripts and schedulers may branch on them):
  0  success (also, under torchrun's agent, a stop for the requeue signal: the batch script's
     request file carries it there)
  2  a user's mistake, a run folder held by another live run, a damaged file, GPU out of memory
  3  non-finite loss or gradients (trainer.on_nonfinite)
  4  a file could not be written (disk full, quota, read-only, permission); resume once fixed
  5  a data-loader worker died (killed, OOM killer) or stuck past dataset.timeout_s
  75  stopped by the requeue signal (trainer.requeue_signal) after a checkpoint: start it again
      (EX_TEMPFAIL; `hpml slurm`'s scripts requeue the job on it)
  128+N  stopped by signal N after a checkpoint (SIGTERM 143, Ctrl-C 130)
"""
from __future__ import annotations

import os
import sys
import traceback


class HpmlError(Exception):
    """A user's mistake: printed as `error: <message>` with exit code 2, no traceback.

    The message names what is wrong and how to fix it, in one line.
    """

    exit_code = 2


class NonFiniteError(HpmlError):
    """The loss or the gradients became NaN/inf (trainer.on_nonfinite)."""

    exit_code = 3


class WriteError(HpmlError):
    """A file hpml writes could not be written (ENOSPC, EDQUOT, EROFS, EACCES)."""

    exit_code = 4


class WorkerLostError(HpmlError, RuntimeError):
    """A data-loader worker was killed or stuck past dataset.timeout_s."""

    exit_code = 5


def report_error(exc: BaseException) -> int:
    """Print `error: <one line>` (the traceback too when HPML_DEBUG=1); returns the exit code."""
    if os.environ.get("HPML_DEBUG") == "1":
        traceback.print_exc()
    message = str(exc).strip()
    if "Original Traceback" in message:  # raised in a DataLoader worker: keep the worker's own line
        message = message.splitlines()[-1].split(": ", 1)[-1]
    print(f"error: {message}", file=sys.stderr)
    return getattr(exc, "exit_code", 2)
