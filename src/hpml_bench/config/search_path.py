"""Where configs are searched: the user's own config folder first, then hpml's.

The user's folder is `--config-dir DIR` (the CLI turns it into HPML_CONFIG_DIR, so every process
hpml starts -- torchrun workers, bench cells, SLURM tasks -- searches the same folder), else
$HPML_CONFIG_DIR, else ./conf in the working directory. Hydra gets the same order through the
search-path plugin in hydra_plugins/hpml_config_dir; listing reads it from here without importing
Hydra or torch (so `hpml list` stays fast).
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path
from typing import Optional

from hpml_bench.errors import HpmlError

ENV = "HPML_CONFIG_DIR"
# Top-level files of hpml's config folder that a user's folder must not shadow (they are what
# `hpml train` and `hpml bench` compose; a user's recipe belongs in experiment/ instead).
PRIMARY_FILES = ("train.yaml", "bench_run.yaml")


def hpml_conf_dir() -> Path:
    """hpml's own config groups: the package hpml_bench.conf in a wheel, the repository's
    top-level conf/ in a checkout (PYTHONPATH=src or an editable install)."""
    checkout = Path(__file__).resolve().parents[3] / "conf"
    if (checkout / "train.yaml").is_file():  # this source tree's own, even when another checkout is installed
        return checkout
    spec = importlib.util.find_spec("hpml_bench.conf")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).resolve()
    return checkout


HPML_CONF = hpml_conf_dir()


def user_conf_dir() -> Optional[Path]:
    """The user's config folder (absolute), or None when there is none."""
    given = os.environ.get(ENV)
    if given:
        folder = Path(given).expanduser().resolve()
        if not folder.is_dir():
            raise HpmlError(f"config folder {folder} (--config-dir / ${ENV}) does not exist; create it or fix the path")
    else:
        folder = Path("conf").resolve()
        if not folder.is_dir() or folder == HPML_CONF:  # hpml's own checkout: nothing extra
            return None
    if folder == HPML_CONF:
        return None
    shadowing = [name for name in PRIMARY_FILES if (folder / name).is_file()]
    if shadowing:
        raise HpmlError(f"{folder / shadowing[0]} would replace hpml's own {shadowing[0]}; rename it "
                        f"(a recipe goes in {folder / 'experiment'}/) or point --config-dir elsewhere")
    return folder


def search_dirs() -> list[Path]:
    """The config folders in search order: the user's (if any), then hpml's."""
    user = user_conf_dir()
    return [user, HPML_CONF] if user else [HPML_CONF]


def group_choices(group: str) -> list[str]:
    """Every name `<group>=<name>` accepts: <folder>/<group>/*.yaml over the search path."""
    return sorted({p.stem for folder in search_dirs() for p in (folder / group).glob("*.yaml")})


def find_config(group: str, name: str) -> Optional[Path]:
    """The file `<group>=<name>` reads (the first in search order), or None."""
    for folder in search_dirs():
        path = folder / group / f"{name}.yaml"
        if path.is_file():
            return path
    return None


def is_users(path: Path) -> bool:
    """Whether a config file comes from the user's folder rather than hpml's."""
    return HPML_CONF not in path.resolve().parents


def pop_config_dir(argv: list[str]) -> list[str]:
    """Take `--config-dir DIR` / `--config-dir=DIR` / `-cd DIR` out of a command line and export
    it as HPML_CONFIG_DIR (absolute), so child processes search the same folder."""
    rest, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config-dir", "-cd"):
            if i + 1 >= len(argv):
                raise HpmlError(f"{arg} needs a folder: hpml <command> {arg} DIR ...")
            value, i = argv[i + 1], i + 2
        elif arg.startswith("--config-dir="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            rest.append(arg)
            i += 1
            continue
        os.environ[ENV] = str(Path(value).expanduser().resolve())
    return rest


@contextlib.contextmanager
def pinned_config_dir(argv: list[str]):
    """For one hpml command: take `--config-dir` out of argv (yielding the rest) and pin the
    user's folder (even one found as ./conf) in HPML_CONFIG_DIR, absolute, so a process started
    elsewhere (a SLURM task, a bench cell, a torchrun worker) finds it. The variable is put back
    afterwards, so in-process callers (tests, notebooks) do not carry it into the next command."""
    saved = os.environ.get(ENV)
    try:
        rest = pop_config_dir(argv)
        user = user_conf_dir()
        if user is not None:
            os.environ[ENV] = str(user)
        yield rest
    finally:
        if saved is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = saved


def config_dir_args() -> list[str]:
    """`--config-dir <user folder>` for a command hpml renders or starts (empty without one)."""
    user = user_conf_dir()
    return ["--config-dir", str(user)] if user is not None else []
