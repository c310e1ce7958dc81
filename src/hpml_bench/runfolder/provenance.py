"""What a run was composed from, recorded in its folder so later commands compose the same:
- config_dir.txt: the user's config folder (`export`, `predict`, `cam`, `eval` and `train resume=`
  re-compose from anywhere; config.yaml has the values, composing again needs the same group
  files, e.g. model=mynet);
- model_source.json: where an outside model's code came from (module, file, sha256), written when
  the run starts; later commands import the code again from there and say in one line when it
  changed or is gone."""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, open_dict

from hpml_bench.config.search_path import ENV, user_conf_dir
from hpml_bench.errors import HpmlError
from hpml_bench.runfolder.checksums import file_sha256
from hpml_bench.runfolder.layout import RunFolder
from hpml_bench.runfolder.writes import atomic_write_json, atomic_write_text


def record_config_dir(folder: RunFolder) -> None:
    user = user_conf_dir()
    if user is not None:
        atomic_write_text(folder.config_dir, f"{user}\n")


@contextlib.contextmanager
def run_config_dir(folder: RunFolder):
    """Within the block, search the config folder the run was composed from."""
    saved = os.environ.get(ENV)
    try:
        use_run_config_dir(folder)
        yield
    finally:
        if saved is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = saved


def use_run_config_dir(folder: RunFolder) -> None:
    """Search the config folder the run was composed from (for the rest of this command)."""
    recorded = folder.config_dir
    if not recorded.is_file():
        return
    where = Path(recorded.read_text().strip())
    if not where.is_dir():
        raise HpmlError(f"{folder} was composed with configs from {where}, which is gone; restore that folder "
                        f"(or write its path into {recorded})")
    os.environ[ENV] = str(where)


def recorded_source(folder: RunFolder) -> Optional[dict]:
    file = folder.model_source
    return json.loads(file.read_text()) if file.is_file() else None


def record_model_source(folder: RunFolder, model_cfg) -> None:
    """Write model_source.json for a model built from the user's code; a resumed run keeps
    the first record (its weights began with that code) and notes a change."""
    source = getattr(model_cfg, "source", None)
    if source is None:
        return
    now, before = source(), recorded_source(folder)
    if before is None:
        atomic_write_json(folder.model_source, now)
    elif before.get("sha256") != now.get("sha256"):
        print(f"note: {now['file']} changed since {folder} started training (sha256 {before['sha256'][:12]} -> "
              f"{str(now['sha256'])[:12]}); resuming with the code as it is now", file=sys.stderr)


def recorded_file(folder: RunFolder) -> Optional[Path]:
    """The model code file the run trained with (None for built-in models); an error when it is gone."""
    before = recorded_source(folder)
    if not before or not before.get("file"):
        return None
    file = Path(before["file"])
    if not file.is_file():
        raise HpmlError(f"{folder} was trained with model code {before['target']} from {file}, which is gone; "
                        f"put that file back (sha256 {before['sha256'][:12]}...)")
    return file


def with_recorded_source(folder: RunFolder, dcfg: DictConfig) -> DictConfig:
    """The run's config set to import the model code from the file it trained with (so any
    working directory works); an error when that file is gone, a note when it changed."""
    file = recorded_file(folder)
    if file is None:
        return dcfg
    before = recorded_source(folder)
    if file_sha256(file) != before["sha256"]:
        print(f"note: {file} changed since {folder} trained (sha256 {before['sha256'][:12]} -> "
              f"{file_sha256(file)[:12]}); using the code as it is now", file=sys.stderr)
    with open_dict(dcfg):
        dcfg.model.path = str(file)
    return dcfg
