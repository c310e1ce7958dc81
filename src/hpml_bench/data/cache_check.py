"""A prepared cache checked before a run reads it: each file's size and a hash of sampled blocks.

`hpml prepare` records each file's size, full sha256 and a hash of 64 sampled 64 KiB blocks;
a run checks the size and the sampled blocks (at most 4 MiB read per file, whatever its size);
`HPML_VERIFY_CACHE=full` checks the full sha256 instead.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from hpml_bench.errors import HpmlError
from hpml_bench.runfolder.checksums import file_sha256

BLOCK = 1 << 16
SAMPLES = 64


def sampled_sha256(path: Path) -> str:
    """sha256 of the size and of SAMPLES blocks spread evenly over the file (the last included)."""
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        starts = sorted({max(0, min(size - BLOCK, k * (size - BLOCK) // max(1, SAMPLES - 1))) for k in range(SAMPLES)})
        for start in starts:
            f.seek(start)
            digest.update(f.read(BLOCK))
    return digest.hexdigest()


def file_records(folder: Path, names: list[str]) -> dict[str, dict]:
    """What index.json records of each cache file: size, full sha256, sampled-block sha256."""
    return {name: {"size": os.path.getsize(folder / name), "sha256": file_sha256(folder / name),
                   "sampled_sha256": sampled_sha256(folder / name)} for name in names}


def check_files(folder: Path, records: dict[str, dict], fix: str) -> None:
    """Refuse (one line) a cache whose files differ from index.json's records."""
    full = os.environ.get("HPML_VERIFY_CACHE") == "full"
    for name, rec in records.items():
        file = folder / name
        if not file.is_file():
            raise HpmlError(f"cache file {file} is missing; {fix}")
        size = os.path.getsize(file)
        if size != rec["size"]:
            raise HpmlError(f"cache file {file} is damaged ({size} bytes, the index says {rec['size']}: truncated?); {fix}")
        if (file_sha256(file) != rec["sha256"]) if full else (sampled_sha256(file) != rec["sampled_sha256"]):
            raise HpmlError(f"cache file {file} is damaged (its content differs from the index's checksum); {fix}")
