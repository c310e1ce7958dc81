"""How the commands take their words. The grammar itself, Hydra's override grammar plus one
rule for paths, is config/words.py (below every package that reads words):

- `hpml train`, `prepare`, `slurm`, `bench` hand their words to Hydra (`hydra_words` first);
- `export`, `predict`, `eval`, `cam` parse them into their config dataclass (`parse_args`): the
  keys of the dataclass, an optional `<command>.` prefix, `--flag` for a true boolean, --help;
- `report` takes folders and `--baseline/--out` (or `baseline=`/`out=` words).

So `images='my photos'`, `images="my photos"` and `images=my\\ photos` name the same folder in
every command, as `dataset.root='my data'` does in `hpml train`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hpml_bench.config.words import key_of, value_of
from hpml_bench.errors import HpmlError
from hpml_bench.registry import unknown_choice

# What a required key names, in its one-line error.
_WHAT = {"run": "<run folder> (a folder under runs/ that hpml train wrote)", "images": "<image file or folder>"}


def wants_help(args: list[str]) -> bool:
    return "--help" in args or "-h" in args


def keys_help(schema: type, usage: str) -> str:
    """The command's usage text, then each key with its default."""
    fields = "\n".join(f"  {f.name}={_default(f)}" for f in dataclasses.fields(schema))
    return f"{usage.strip()}\n\nkeys (defaults):\n{fields}"


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def parse_args(args: list[str], schema: type, command: str, required: tuple[str, ...] = ("run",)) -> Any:
    """`key=value` (and `--flag`) words into the typed config `schema`; one line for a word
    that is not one, an unknown key (with the nearest names) or a value of the wrong type."""
    names = [f.name for f in dataclasses.fields(schema)]
    values: dict[str, Any] = {}
    for arg in args:
        if arg.startswith("--") and "=" not in arg:
            flag = arg[2:].replace("-", "_")
            if flag not in names or not isinstance(_default(_field(schema, flag)), bool):
                raise HpmlError(f"hpml {command}: unknown flag {arg}; the keys are {', '.join(names)} "
                                f"(`hpml {command} --help`)")
            values[flag] = True
            continue
        if "=" not in arg:
            raise HpmlError(f"hpml {command}: expected key=value arguments, got {arg!r} (e.g. run=runs/<id>)")
        key = key_of(arg).removeprefix(f"{command}.")
        if key not in names:
            raise unknown_choice(f"{command} argument", key, names)
        values[key] = value_of([arg], key_of(arg))
    try:
        given = OmegaConf.create(values)
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), given))
    except OmegaConfBaseException as exc:
        if isinstance(exc.__cause__, HpmlError):
            raise exc.__cause__ from None
        raise HpmlError(f"hpml {command}: {str(exc).strip().splitlines()[0]}") from exc
    for key in required:
        if not getattr(cfg, key):
            raise HpmlError(f"hpml {command} needs {key}={_WHAT.get(key, f'<{key}>')}")
    return cfg


def _field(schema: type, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(schema) if f.name == name)


def set_threads(threads: int | None) -> None:
    """`threads=N`: torch's CPU threads for this command (None: torch's default)."""
    if threads:
        import torch  # here: the grammar itself is used before torch is needed

        torch.set_num_threads(threads)
