"""`hpml list <what>`: the registered choices, with what each is.

Listing must be quick (≤ 1.5 s), so it reads the conf/ files and a generated table of
model facts (hpml_bench/cli/model_table.py) instead of composing configs or importing torch;
only a model missing from that table is built (on the meta device) to count its parameters.
Regenerate the table after changing a model: `python -m hpml_bench.cli.listing --write-table`.
"""
from __future__ import annotations

import fnmatch
import sys
from importlib import metadata
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from hpml_bench.config import search_path
from hpml_bench.console import make_console
from hpml_bench.errors import HpmlError
from hpml_bench.registry import unknown_choice

CONF_DIR = search_path.HPML_CONF
TABLE_FILE = Path(__file__).parent / "model_table.py"
# model= choices that build outside models (models/source.py): listed by source, not in the table.
# name -> the package whose architectures they offer (None: the user's own code).
SOURCES = {"torchvision": "torchvision", "timm": "timm", "custom": None}
_GROUPS = {"models": "model", "datasets": "dataset", "strategies": "strategy", "optimizers": "optimizer",
           "schedulers": "scheduler", "loggers": "logger", "profilers": "profiler", "benches": "bench",
           "experiments": "experiment", "slurm": "slurm"}


def group_choices(group: str) -> list[str]:
    """The config names a group offers (<folder>/<group>/*.yaml, the user's folder and hpml's)."""
    return search_path.group_choices(group)


def describe(group: str, name: str) -> str:
    """The first comment line of <folder>/<group>/<name>.yaml; `(yours)` for the user's own."""
    path = search_path.find_config(group, name)
    # an experiment's first line is Hydra's `# @package _global_`; its description follows
    lines = [l for l in path.read_text().splitlines() if not l.startswith("# @package")] or [""]
    text = escape(lines[0].lstrip("# ").strip()) if lines[0].startswith("#") else ""  # rich would eat [extras]
    return f"(yours) {text}".strip() if search_path.is_users(path) else text


def builtin_models() -> list[str]:
    """The model choices of the table (the outside sources get their own rows)."""
    return [name for name in group_choices("model") if name not in SOURCES]


def print_listing(what: str, options: list[str] = ()) -> None:
    """`hpml list <what>`; for models also `--source torchvision|timm [--filter '<glob>']`."""
    if what not in _GROUPS:
        raise unknown_choice("list", what, _GROUPS)
    group, flags = _GROUPS[what], _flags(list(options))
    console = make_console()
    if "--source" in flags:
        console.print(_source_table(flags["--source"], flags.get("--filter", "*")))
        return
    table = _model_table() if group == "model" else _group_table(group)
    user = search_path.user_conf_dir()
    if user is not None:
        table.caption = f"(yours): from {user}, searched before hpml's own"
    console.print(table)
    if group == "model":
        console.print(_sources_table())


def _flags(options: list[str]) -> dict[str, str]:
    flags = {}
    while options:
        flag = options.pop(0)
        key, _, value = flag.partition("=")
        if key not in ("--source", "--filter"):
            raise HpmlError(f"hpml list models: unknown option {flag}; use --source torchvision|timm [--filter '<glob>']")
        flags[key] = value or (options.pop(0) if options else "")
    if "--filter" in flags and "--source" not in flags:
        raise HpmlError("hpml list models --filter needs --source torchvision|timm (the built-ins are all listed)")
    return flags


def source_archs(source: str) -> dict[str, str]:
    """name -> task of every architecture a source offers (imports torch: seconds)."""
    if source == "torchvision":
        # here: `hpml list` must not import torch (the listing stays under ~1.5 s)
        from hpml_bench.models.tv import archs

        return archs()
    # here: `hpml list` must not import torch (the listing stays under ~1.5 s)
    from hpml_bench.models.timm_models import archs

    return {name: "classification" for name in archs()}


def _source_table(source: str, pattern: str) -> Table:
    packages = [k for k, v in SOURCES.items() if v]
    if source not in packages:
        raise unknown_choice("--source", source, packages)
    names = {n: t for n, t in source_archs(source).items() if fnmatch.fnmatch(n, pattern or "*")}
    table = Table(title=f"{source}: {len(names)} matching {pattern!r}", caption=f"model={source} model.arch=<name>")
    table.add_column("name")
    table.add_column("task")
    for name, task in sorted(names.items()):
        table.add_row(name, task)
    return table


def _sources_table() -> Table:
    # here: `hpml list` must not import torch (the listing stays under ~1.5 s)
    from hpml_bench.cli.model_table import SOURCE_FACTS

    table = Table(title="outside models (model=<source>)")
    for column in ("source", "architectures", "what it is"):
        table.add_column(column)
    for name, package in SOURCES.items():
        table.add_row(name, _arch_count(name, package, SOURCE_FACTS.get(name, {})), describe("model", name))
    return table


def _arch_count(source: str, package: str | None, facts: dict) -> str:
    """The count the table recorded for the installed version (counting imports torch)."""
    if package is None:
        return "your own"
    try:
        version = metadata.version(package)
    except metadata.PackageNotFoundError:
        return escape(f"not installed (pip install 'hpml-bench[{source}]')")
    count = facts["archs"] if facts.get("version") == version else len(source_archs(source))
    return f"{count:,} ({package} {version}; --source {source} lists them)"


def _group_table(group: str) -> Table:
    table = Table(title=f"{group} choices ({group}=<name>)")
    table.add_column("name")
    table.add_column("what it is")
    for name in group_choices(group):
        table.add_row(name, describe(group, name))
    return table


def _model_table() -> Table:
    # here: `hpml list` must not import torch (the listing stays under ~1.5 s)
    from hpml_bench.cli.model_table import MODEL_FACTS

    table = Table(title="model choices (model=<name>); parameters at the default classes/channels")
    for column in ("name", "task", "input", "accepts", "parameters", "what it is"):
        table.add_column(column, justify="right" if column == "parameters" else "left")
    for name in builtin_models():
        path = search_path.find_config("model", name)
        # The table holds hpml's own models; a user's model (or one added since) is built here.
        facts = None if search_path.is_users(path) else MODEL_FACTS.get(name)
        try:
            facts = facts or model_facts(name)
        except HpmlError as exc:  # one broken user model must not hide the others
            table.add_row(name, "?", "?", "?", "?", f"error: {exc}")
            continue
        size = facts["input_size"]
        table.add_row(name, facts["task"], f"{size}x{size}", facts["accepts"], f"{facts['parameters']:,}", describe("model", name))
    return table


def model_facts(name: str) -> dict:
    """Task, input size and parameter count of conf/model/<name>.yaml, by composing and
    building it (on the meta device where it can be: shapes only). Slow: imports torch."""
    # here: `hpml list` must not import torch (the listing stays under ~1.5 s)
    from hpml_bench.models import build_for_shapes, count_parameters

    # here: `hpml list` must not import torch (the listing stays under ~1.5 s)
    from hpml_bench.models.input_size import input_rule

    # here: `hpml list` must not import torch (the listing stays under ~1.5 s)
    from hpml_bench.train.config import model_config

    cfg = model_config(name)
    if cfg.task == "auto":  # an outside model (a user's conf/model/mynet.yaml): probe it at its own defaults
        from types import SimpleNamespace

        data = SimpleNamespace(channels=cfg.in_channels or 3, num_classes=cfg.num_classes or 2, image_size=cfg.input_size)
        cfg = cfg.inspected(data)
    params = count_parameters(build_for_shapes(cfg))
    accepts = "the data's size" if cfg.input_follows_data else input_rule(cfg).replace("at least", ">=").replace("at most", "<=")
    return {"task": cfg.task, "input_size": cfg.input_size, "accepts": accepts, "parameters": params}


def write_table() -> None:
    """Regenerate model_table.py from every model of hpml's own conf/model/."""
    facts = {name: model_facts(name) for name in sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
             if name not in SOURCES}
    sources = {name: {"version": metadata.version(package), "archs": len(source_archs(name))}
               for name, package in SOURCES.items() if package}
    lines = ['"""Generated by `python -m hpml_bench.cli.listing --write-table`: what `hpml list models` shows,',
             'so listing needs neither torch nor Hydra. tests/test_listing.py checks it is current."""',
             "", "MODEL_FACTS = {"]
    lines += [f"    {name!r}: {value!r}," for name, value in facts.items()]
    lines += ["}", "", "# architectures each source offered at the version that wrote this table", "SOURCE_FACTS = {"]
    lines += [f"    {name!r}: {value!r}," for name, value in sources.items()]
    TABLE_FILE.write_text("\n".join(lines + ["}", ""]))


def list_command(args: list[str]) -> int:
    """The `hpml list` command: hpml list models --source timm --filter '*convnext*'."""
    what = args[0] if args else "models"
    print_listing(what, args[1:])
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-table"]:
        write_table()
    else:
        print_listing(sys.argv[1] if len(sys.argv) > 1 else "models", sys.argv[2:])
