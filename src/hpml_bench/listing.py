"""`hpml list <what>`: the registered choices, with what each is."""
from __future__ import annotations

import torch
from rich.table import Table

from hpml_bench.config import CONF_DIR, choices
from hpml_bench.registry import unknown_choice
from hpml_bench.ui import make_console

_GROUPS = {"models": "model", "datasets": "dataset", "strategies": "strategy", "optimizers": "optimizer",
           "schedulers": "scheduler", "loggers": "logger", "profilers": "profiler", "benches": "bench"}


def describe(group: str, name: str) -> str:
    """The first comment line of conf/<group>/<name>.yaml."""
    first = (CONF_DIR / group / f"{name}.yaml").read_text().splitlines()[0]
    return first.lstrip("# ").strip() if first.startswith("#") else ""


def print_listing(what: str) -> None:
    if what not in _GROUPS:
        raise unknown_choice("list", what, _GROUPS)
    group = _GROUPS[what]
    table = _model_table() if group == "model" else _group_table(group)
    make_console().print(table)


def _group_table(group: str) -> Table:
    table = Table(title=f"{group} choices ({group}=<name>)")
    table.add_column("name")
    table.add_column("what it is")
    for name in choices(group):
        table.add_row(name, describe(group, name))
    return table


def _model_table() -> Table:
    from hpml_bench.models import build_model_from_config, count_parameters
    from hpml_bench.input_size import input_rule
    from hpml_bench.models.factory import model_config

    table = Table(title="model choices (model=<name>); parameters at the default classes/channels")
    for column in ("name", "task", "input", "accepts", "parameters", "what it is"):
        table.add_column(column, justify="right" if column == "parameters" else "left")
    for name in choices("model"):
        cfg = model_config(name)
        with torch.device("meta"):  # shapes only: no memory, no time
            params = count_parameters(build_model_from_config(cfg))
        accepts = "the data's size" if cfg.input_follows_data else input_rule(cfg).replace("at least", ">=")
        table.add_row(name, cfg.task, f"{cfg.input_size}x{cfg.input_size}", accepts, f"{params:,}", describe("model", name))
    return table
