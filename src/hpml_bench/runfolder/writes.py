"""Atomic writes (temp file, fsync, rename) and the one-line errors of a write that fails."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional

from hpml_bench.errors import WriteError

# Write failures that are the file system's state, not a bug: one line, exit 4.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def free_space(path: Path) -> str:
    """'12.3 MiB free' on the file system holding `path` (its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return f"{shutil.disk_usage(path).free / 2**20:.1f} MiB free"
    except OSError:
        return "free space unknown"


def write_error(path, exc: BaseException) -> WriteError:
    reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else "write failed (disk full?)"
    denied = isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    fix = "write somewhere writable (run_dir=) or fix its permissions" if denied else "free space"
    return WriteError(f"cannot write {path}: {reason}, {free_space(Path(path))} there; {fix}")


def shown(path: Path) -> Path:
    """`path` relative to the working directory when it is below it (for commands to copy)."""
    path = Path(path).resolve()
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def is_write_failure(exc: BaseException) -> bool:
    """An OSError of WRITE_ERRNOS, or torch.save's RuntimeError for a short write (full disk)."""
    if isinstance(exc, OSError):
        return exc.errno in WRITE_ERRNOS
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("inline_container" in text or "PytorchStreamWriter" in text
                                              or "unexpected pos" in text)


@contextlib.contextmanager
def writing(path: Path, tmp: Optional[Path] = None):
    """A write failure of `path` becomes WriteError; the temp file is removed, `path` untouched."""
    try:
        yield
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, Exception) and is_write_failure(exc):
            raise write_error(path, exc) from exc
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file beside `path`, fsync, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path, tmp):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def check_writable(run_dir: Path, create: bool = True) -> None:
    """Refuse a run folder that cannot be written at all, before any data is loaded.
    create=False probes its nearest existing folder and makes nothing."""
    folder = Path(run_dir)
    while not create and not folder.exists() and folder != folder.parent:
        folder = folder.parent
    probe = folder / f".hpml.probe.{os.getpid()}"
    with writing(run_dir, probe):
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
        os.unlink(probe)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")
