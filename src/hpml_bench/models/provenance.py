"""model_source.json in a run folder: where an outside model's code came from (module,
file, sha256), written when the run starts; `export`, `predict`, `cam` and a resumed run
import the code again from there and say in one line when it changed or is gone."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, open_dict

from hpml_bench.errors import HpmlError
from hpml_bench.runfolder import atomic_write_json

MODEL_SOURCE = "model_source.json"


def recorded_source(run_dir: Path) -> Optional[dict]:
    file = Path(run_dir) / MODEL_SOURCE
    return json.loads(file.read_text()) if file.is_file() else None


def record_model_source(run_dir: Path, model_cfg) -> None:
    """Write model_source.json for a model built from the user's code; a resumed run keeps
    the first record (its weights began with that code) and notes a change."""
    source = getattr(model_cfg, "source", None)
    if source is None:
        return
    now, before = source(), recorded_source(run_dir)
    if before is None:
        atomic_write_json(Path(run_dir) / MODEL_SOURCE, now)
    elif before.get("sha256") != now.get("sha256"):
        print(f"note: {now['file']} changed since {run_dir} started training (sha256 {before['sha256'][:12]} -> "
              f"{str(now['sha256'])[:12]}); resuming with the code as it is now", file=sys.stderr)


def recorded_file(run_dir: Path) -> Optional[Path]:
    """The model code file the run trained with (None for built-in models); an error when it is gone."""
    before = recorded_source(run_dir)
    if not before or not before.get("file"):
        return None
    file = Path(before["file"])
    if not file.is_file():
        raise HpmlError(f"{run_dir} was trained with model code {before['target']} from {file}, which is gone; "
                        f"put that file back (sha256 {before['sha256'][:12]}...)")
    return file


def with_recorded_source(run_dir: Path, dcfg: DictConfig) -> DictConfig:
    """The run's config set to import the model code from the file it trained with (so any
    working directory works); an error when that file is gone, a note when it changed."""
    file = recorded_file(run_dir)
    if file is None:
        return dcfg
    before = recorded_source(run_dir)
    from hpml_bench.integrity import file_sha256

    if file_sha256(file) != before["sha256"]:
        print(f"note: {file} changed since {run_dir} trained (sha256 {before['sha256'][:12]} -> "
              f"{file_sha256(file)[:12]}); using the code as it is now", file=sys.stderr)
    with open_dict(dcfg):
        dcfg.model.path = str(file)
    return dcfg
