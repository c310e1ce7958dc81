"""Optimizer state by parameter name: the one form every strategy writes into a checkpoint, so a
run can go on under another strategy or number of ranks.

torch's `Optimizer.state_dict()` numbers the parameters in the order of its param groups, and
that order is the wrapped model's on one device but a stage's under a pipeline. Keyed by the
parameter's name in the user's model instead (the form torch.distributed.checkpoint's
`get_optimizer_state_dict` gives FSDP), the same state loads into any of them.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from hpml_bench.errors import HpmlError


def numbered_state_refused(strategy: str) -> str:
    """Why a numbered optimizer state (from before by-name states) cannot go on under `strategy`."""
    return (f"this checkpoint was written before hpml saved optimizer state by parameter name, by another "
            f"strategy or number of ranks than strategy={strategy} here; resume it with the strategy and "
            f"strategy.nproc_per_node it was trained with")


def param_names(model: nn.Module) -> dict[int, str]:
    """id(parameter) -> its name in `model` (the user's model, under any wrapper)."""
    return {id(p): name for name, p in model.named_parameters()}


def by_name(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, Any]:
    """`optimizer.state_dict()` with each parameter number replaced by its name in `model`."""
    names = param_names(model)
    ordered = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    state = optimizer.state_dict()
    return {"state": {ordered[i]: s for i, s in state["state"].items()},
            "param_groups": [{**g, "params": [ordered[i] for i in g["params"]]} for g in state["param_groups"]]}


def is_by_name(state: dict[str, Any]) -> bool:
    """A state keyed by names (not numbers, the form of checkpoints before it)."""
    groups = state.get("param_groups") or [{}]
    return bool(groups[0].get("params")) and isinstance(groups[0]["params"][0], str)


def merged(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One by-name state from several (a pipeline's ranks, each over its own stages): group k
    holds every part's group k's parameters."""
    out: dict[str, Any] = {"state": {}, "param_groups": []}
    for part in parts:
        out["state"].update(part["state"])
        for k, group in enumerate(part["param_groups"]):
            if k == len(out["param_groups"]):
                out["param_groups"].append({**group, "params": []})
            out["param_groups"][k]["params"] += group["params"]
    return out


def load_by_name(optimizer: torch.optim.Optimizer, model: nn.Module, state: dict[str, Any]) -> None:
    """Load a by-name state into `optimizer` (over some or all of `model`'s parameters): each
    parameter takes its own state and its group's settings, wherever the writer had them."""
    names = param_names(model)
    ordered = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    number = {name: i for i, name in enumerate(ordered)}
    group_of = {name: g for g in state["param_groups"] for name in g["params"]}
    groups = []
    for group in optimizer.param_groups:
        own = [names[id(p)] for p in group["params"]]
        missing = [name for name in own if name not in group_of]
        if missing:
            raise HpmlError(f"the checkpoint's optimizer state has no parameter {missing[0]}; it was written for "
                            f"another model (resume with the model it trained)")
        saved = group_of[own[0]]
        groups.append({**{k: v for k, v in saved.items() if k != "params"}, "params": [number[n] for n in own]})
    optimizer.load_state_dict({"state": {number[n]: s for n, s in state["state"].items() if n in number},
                               "param_groups": groups})
