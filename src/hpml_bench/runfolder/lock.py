"""One live run per run folder: `<run>/.hpml.lock`, and a checkpoint-write lock readers respect.

The run lock is an exclusive flock(2) held by the training process (rank 0 under torchrun or
SLURM) for the whole run; the file records who holds it (pid, host, start time, SLURM job /
torchrun run id and restart count) and its mtime is the heartbeat, touched every lease/4 s.

Who may take it:
- nobody else holds the flock, and the recorded holder is on this host (a dead pid: the kernel
  already dropped its flock), or on another host with a heartbeat older than the lease
  (HPML_LOCK_LEASE_S, 120 s): its process is gone (flock over NFS is not always seen across hosts);
- a restart of the same job: the same SLURM job id or torchrun run id with a higher restart
  count (SLURM ended the earlier incarnation before requeueing it; torchrun's agent restarted
  its workers). A duplicate start (same restart count) of a live job is refused.
Anyone else gets one line saying who holds it (exit 2).

`<run>/.hpml.write.lock` is held exclusively only while a checkpoint is written; `export`, `cam`
and `predict` take it shared without waiting, so they never read while a checkpoint is written.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Optional

from hpml_bench.errors import HpmlError

LOCK = ".hpml.lock"
WRITE_LOCK = ".hpml.write.lock"  # in <run>/checkpoints/


def lease_s() -> float:
    return float(os.environ.get("HPML_LOCK_LEASE_S", "120"))


def _identity() -> dict:
    env = os.environ
    job = env.get("SLURM_JOB_ID") and f"slurm:{env['SLURM_JOB_ID']}"
    job = job or (env.get("TORCHELASTIC_RUN_ID") and f"torchrun:{env['TORCHELASTIC_RUN_ID']}")
    restarts = max(int(env.get(v, "0") or 0) for v in ("SLURM_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT"))
    return {"pid": os.getpid(), "host": socket.gethostname(), "job": job, "restarts": restarts,
            "started": datetime.datetime.now().isoformat(timespec="seconds")}


def _read(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (ValueError, OSError):
        return {}  # being rewritten, or not ours: treated as unknown


def _describe(holder: dict, age_s: float) -> str:
    who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    if holder.get("job"):
        who += f" ({holder['job']}, restart {holder.get('restarts', 0)})"
    return f"{who} since {holder.get('started', '?')}, heartbeat {age_s:.0f} s ago"


def _may_take_over(holder: dict, me: dict, age_s: float) -> bool:
    """flock was free: is the recorded holder gone (or an earlier incarnation of this job)?"""
    if not holder or holder.get("host") == me["host"]:
        return True  # on one host flock is exact: nobody holds it
    if holder.get("job") and holder["job"] == me["job"] and holder.get("restarts", 0) < me["restarts"]:
        return True
    return age_s > lease_s()


class RunLock:
    """The run folder's lock, held from acquire() to release() (with a heartbeat thread)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self.fd: Optional[int] = None
        self._stop = threading.Event()

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = _identity()
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            holder, age_s = _read(fd), time.time() - os.fstat(fd).st_mtime
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise held_error(self.path.parent, holder, age_s) from None
            if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                break
            os.close(fd)  # released and removed between our open and flock: try the new file
        if not _may_take_over(_read(fd), me, age_s):
            os.close(fd)
            raise held_error(self.path.parent, holder, age_s)
        data = json.dumps(me).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        self.fd = fd
        threading.Thread(target=self._beat, name="hpml-lock-heartbeat", daemon=True).start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(lease_s() / 4):
            with contextlib.suppress(OSError):
                os.utime(self.fd)

    def release(self) -> None:
        if self.fd is None:
            return
        self._stop.set()
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # before unlocking: a waiter then sees the inode changed
        os.close(self.fd)
        self.fd = None


def held_error(run_dir: Path, holder: dict, age_s: float) -> HpmlError:
    return HpmlError(f"run folder {run_dir} is in use by a live hpml train ({_describe(holder, age_s)}); "
                     f"wait for it to finish, or pick another run_dir")


def check_not_held(run_dir: Path) -> None:
    """Refuse early (before any data is loaded or workers launched) if a live run holds run_dir."""
    path = Path(run_dir) / LOCK
    if not path.is_file():
        return
    lock = RunLock(run_dir)
    lock.acquire()  # raises the one line if held; else it was stale: give it back at once
    lock.release()


@contextlib.contextmanager
def writing_checkpoint(folder: Path):
    """Held exclusively while a checkpoint file is written (blocks only for a reader's moment)."""
    fd = _open_write_lock(Path(folder), create=True)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, json.dumps(_identity()).encode().ljust(256), 0)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def reading_checkpoint(folder: Path):
    """export / cam / predict: refuse (one line) while a live run writes a checkpoint into
    `folder` (a run's checkpoints/)."""
    run_dir = Path(folder).parent
    try:
        fd = _open_write_lock(Path(folder))
    except OSError:
        yield  # a read-only run folder: nobody writes there
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            holder = _read(fd)
            raise HpmlError(f"a checkpoint of {run_dir} is being written by {_describe(holder, 0).split(' since')[0]}; "
                            f"run this again in a moment") from None
        yield
    finally:
        os.close(fd)


def _open_write_lock(folder: Path, create: bool = False) -> int:
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return os.open(Path(folder) / WRITE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
