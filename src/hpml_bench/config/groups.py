"""The config groups a command line chooses from, and Hydra's errors as one line.

Composing itself needs the schemas that train/config.py stores, so it lives there; this module
reads only the config folders (no torch, no Hydra schemas), so `hpml list` and the early
checks of every command stay quick.
"""
from __future__ import annotations

from hpml_bench.config import search_path
from hpml_bench.config.words import is_override, key_of, parse_word
from hpml_bench.registry import unknown_choice

CONF_DIR = search_path.HPML_CONF  # hpml's own groups; the user's folder is searched first (search_path)
GROUPS = ("model", "dataset", "strategy", "optimizer", "scheduler", "trainer", "logger", "profiler")
# Train-config groups a command line may choose besides GROUPS (checked the same way).
CHOICE_GROUPS = (*GROUPS, "experiment")


def choices(group: str) -> list[str]:
    """The config names a group offers (<folder>/<group>/*.yaml, the user's folder and hpml's)."""
    return search_path.group_choices(group)


def check_group_choices(overrides: list[str]) -> None:
    """`model=resnt18`, `experiment=mnie` -> an error with the closest names, before Hydra's
    longer message (each value of a simple sweep `model=a,b` is checked too)."""
    for override in overrides:
        if not is_override(override) or "=" not in override or key_of(override) not in CHOICE_GROUPS:
            continue
        key, parsed = key_of(override), parse_word(override)
        if parsed.is_sweep_override() and not parsed.is_choice_sweep():
            continue  # glob(...), range(...): Hydra expands them
        for name in parsed.sweep_string_iterator() if parsed.is_sweep_override() else [parsed.value()]:
            if name not in ("", "null", None) and name not in choices(key):
                raise unknown_choice(key, name, choices(key))


def config_error_line(exc: BaseException) -> str:
    """Hydra/OmegaConf's multi-line message reduced to one line."""
    lines = str(exc).strip().splitlines()
    # "In 'model/x': ConfigKeyError raised while composing config:" says what only on its next line
    parts = [" ".join(lines[:2]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]]
    if exc.__cause__ is not None and str(exc.__cause__).strip():
        parts.append(str(exc.__cause__).strip().splitlines()[0])
    return " ".join(parts) + " (`hpml train --cfg job` shows every key)"
