"""Damaged checkpoints caught before they do harm: sha256 side files and rotated older
checkpoints (trainer.keep_checkpoints).

`last.pt.sha256` (sha256sum's format) is written beside each checkpoint; the hash is computed
while torch.save writes (no second read). Loading hashes the file once more (about the cost of
reading it) and, for a damaged last.pt, falls back to the newest intact `last.<k>.pt`.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO

from hpml_bench.errors import HpmlError
from hpml_bench.runfolder.writes import atomic_write_text, writing


class HashingWriter:
    """A binary file that hashes what is written to it (torch.save writes through it)."""

    def __init__(self, f: BinaryIO):
        self.f, self.digest = f, hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def side_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rotated(path: Path, k: int) -> Path:
    """last.pt -> last.1.pt, last.2.pt, ... (k >= 1: older)."""
    return path.with_name(f"{path.stem}.{k}{path.suffix}")


def rotate(path: Path, keep: int) -> None:
    """Shift path -> path.1 -> ... keeping keep-1 older copies (with their side files)."""
    for k in range(keep - 1, 0, -1):
        older = path if k == 1 else rotated(path, k - 1)
        for src, dst in ((older, rotated(path, k)), (side_file(older), side_file(rotated(path, k)))):
            if src.exists():
                os.replace(src, dst)


def damage(path: Path) -> str | None:
    """Why `path` is not the file its side file describes (None: intact or no side file)."""
    recorded = side_file(path)
    if not recorded.is_file():
        return None
    expected = recorded.read_text().split()[0] if recorded.read_text().strip() else ""
    actual = file_sha256(path)
    return None if actual == expected else f"sha256 {actual[:12]}... but {recorded.name} records {expected[:12]}..."


def load_checkpoint_file(path: Path) -> dict[str, Any]:
    """torch.load of a checked checkpoint; a damaged last.pt falls back to the newest intact
    rotated one (trainer.keep_checkpoints) with a warning."""
    import torch  # here, not at the top: `hpml list` and the cache check use this module without torch

    candidates = [path] + [rotated(path, k) for k in range(1, 100) if rotated(path, k).is_file()]
    reasons = []
    for candidate in candidates:
        if not candidate.is_file():
            continue
        why = damage(candidate)
        if why is None:
            try:
                state = torch.load(candidate, map_location="cpu", weights_only=True)
            except Exception as exc:
                why = f"unreadable ({type(exc).__name__})"
            else:
                if candidate != path:
                    print(f"warning: {path} is damaged ({reasons[0]}); falling back to {candidate.name}"
                          f" (epoch {state.get('epoch', '?')})", file=sys.stderr, flush=True)
                return state
        reasons.append(why)
    hint = ("" if len(candidates) > 1 else
            "; trainer.keep_checkpoints=2 (or more) keeps older checkpoints to fall back to")
    raise HpmlError(f"checkpoint {path} is damaged ({reasons[0] if reasons else 'missing'}) and no intact older "
                    f"checkpoint is beside it{hint}")


def atomic_torch_save(obj: Any, path: Path, keep: int = 1) -> None:
    """Temp file, fsync, rename, then its sha256 beside it (<name>.sha256); a full disk is
    WriteError with the temp file removed. keep > 1 rotates older copies only once the new
    file is whole."""
    import torch  # here, not at the top: `hpml list` and the cache check use this module without torch

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path, tmp):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            hashing = HashingWriter(f)
            torch.save(obj, hashing)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename: a crash leaves the old file or the new one
        rotate(path, keep)
        os.replace(tmp, path)
    atomic_write_text(side_file(path), f"{hashing.digest.hexdigest()}  {path.name}\n")
