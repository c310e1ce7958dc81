"""The run folder: its files, atomic writes, and the checks that protect what is on disk."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from hpml_bench.errors import HpmlError

CONFIG = "config.yaml"
OVERRIDES = "overrides.yaml"
EPOCHS = "epochs.csv"
RANKS = "ranks.csv"  # per-rank times of each epoch
SUMMARY = "summary.json"
LAST = Path("checkpoints") / "last.pt"


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def check_run_folder(run_dir: Path, resume: Optional[str]) -> Optional[Path]:
    """Refuse to overwrite a run; for resume=, return the checkpoint to continue from."""
    if resume:
        checkpoint = Path(resume) / LAST
        if not checkpoint.is_file():
            raise HpmlError(f"resume={resume}: no checkpoint at {checkpoint}; give the run folder of an earlier hpml train")
        return checkpoint
    if (run_dir / SUMMARY).exists():
        raise HpmlError(f"run folder {run_dir} already holds a finished run; pick another run_dir (or HPML_RUN_ID), "
                        f"or resume={run_dir} trainer.epochs=<more> to train on")
    if (run_dir / LAST).exists():
        raise HpmlError(f"run folder {run_dir} holds an unfinished run; continue it with resume={run_dir}")
    return None
