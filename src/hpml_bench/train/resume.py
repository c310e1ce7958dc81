"""`resume=<run>`: refuse a config whose model cannot take the run's checkpoint (one line naming
what differs, before anything trains, the checkpoint untouched), then continue the run, under
its own strategy or another one (another number of ranks or devices).

Every strategy writes full state: the model's state_dict as one device holds it, the optimizer
state by parameter name (strategies/optim_state.py). What a change of strategy changes is how
the data is split: ranks x batch per rank samples a step, so a run stopped mid-epoch continues at
the same sample of the epoch's order (when that falls on a step boundary of the new split), and
the learning-rate schedule continues at the same point of its epochs.
"""
from __future__ import annotations

import dataclasses
import datetime
import math
import sys
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from hpml_bench.errors import HpmlError
from hpml_bench.models import build_model_from_config
from hpml_bench.runfolder import RunFolder
from hpml_bench.strategies import Strategy
from hpml_bench.train.trainer import Trainer

# Model fields that do not change the weights' shapes (named only when the shapes differ).
_SHAPELESS = ("weights", "freeze_backbone", "input_size")


_UNSET = object()  # a model key the other model does not have


def _shown(value: Any) -> str:
    return "unset" if value is _UNSET else str(value)


def shapes(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}


def check_resumable(cfg, folder: RunFolder, checkpoint: Path) -> None:
    """Before anything starts: the checkpoint's weights against this config's model, both read
    without their data (a meta-device model, the file's tensor shapes). A file that cannot be
    read that way is left to the run's own checks (a damaged last.pt falls back to an older one)."""
    try:
        state = torch.load(checkpoint, map_location="meta", weights_only=True, mmap=True)
        with torch.device("meta"):
            model = build_model_from_config(dataclasses.replace(cfg.model, weights=None, freeze_backbone=False))
    except Exception:  # noqa: BLE001 - checked again, with the real model, by the run itself
        return
    check_model_fits(shapes(state.get("model", {})), model, cfg, folder, checkpoint)


def check_model_fits(saved: dict[str, tuple[int, ...]], model: nn.Module, cfg, folder: RunFolder,
                     checkpoint: Path) -> None:
    """One line naming what differs when the checkpoint's weights are not this model's."""
    own = shapes(model.state_dict())
    if own == saved:
        return
    differs = [f"{key} {_shown(a)} there, {_shown(b)} here" for key, (a, b) in _config_differences(folder, cfg).items()]
    reshaped = [k for k in own if k in saved and own[k] != saved[k]]
    if reshaped:
        k = reshaped[0]
        layer = f"layer {k} is {list(saved[k])} there, {list(own[k])} here"
    else:
        only_there, only_here = [k for k in saved if k not in own], [k for k in own if k not in saved]
        layer = (f"layer {only_there[0]} is only there" if only_there else f"layer {only_here[0]} is only here")
    what = "; ".join([*differs, layer])
    raise HpmlError(f"resume={folder}: its checkpoint does not fit the model this config builds ({what}); "
                    f"continue it with the run's own model settings (drop the overrides that change them), "
                    f"or train this model in a new run (without resume=). {checkpoint.name} is unchanged")


def _config_differences(folder: RunFolder, cfg) -> dict[str, tuple[Any, Any]]:
    """model.<key> (and the data set's image size and channels) as the run had them and as now."""
    # here: a run's saved config is read only when its checkpoint does not fit (trained_run imports the deploy path)
    from hpml_bench.train.trained_run import load_config

    try:
        saved = load_config(folder)
    except Exception:  # noqa: BLE001 - the layer shapes alone still say what differs
        return {}
    then, now = dataclasses.asdict(saved.model), dataclasses.asdict(cfg.model)
    if then["name"] != now["name"]:  # another architecture: its other keys follow from that
        return {"model.name": (then["name"], now["name"])}
    out = {f"model.{k}": (then[k], now.get(k, _UNSET)) for k in then
           if k not in _SHAPELESS and then[k] != now.get(k, _UNSET)}
    out.update({f"model.{k}": (_UNSET, now[k]) for k in now if k not in then})
    for key in ("image_size", "channels"):
        if getattr(saved.dataset, key) != getattr(cfg.dataset, key):
            out[f"dataset.{key}"] = (getattr(saved.dataset, key), getattr(cfg.dataset, key))
    return out


def resume(trainer: Trainer, strategy: Strategy, checkpoint: Path, cfg, folder: RunFolder) -> None:
    """Load the checkpoint into the built trainer and strategy, converting a run's position and
    schedule when it was written under another split of the data."""
    state = strategy.load_checkpoint(checkpoint)
    check_model_fits(shapes(state["model"]), strategy.unwrapped(), cfg, folder, checkpoint)
    then, now = state.get("layout"), trainer.layout()
    moved = then is not None and then != now
    if moved:
        state = {**state, "step": _position(state, then, now, folder), "scheduler": None}
    fresh_lrs = list(strategy.scheduler.base_lrs) if strategy.scheduler is not None else []
    trainer.load_state_dict(state)
    if strategy.is_main:
        print(f"hpml: resuming {checkpoint} at epoch {trainer.start_epoch + 1} step {trainer.start_step} "
              f"({datetime.datetime.now():%H:%M:%S.%f})", file=sys.stderr, flush=True)
    if moved:
        where = _continue_schedule(strategy, trainer, now, fresh_lrs)
        if strategy.is_main:
            print(f"hpml: the run was {_split(then)}, it goes on as {_split(now)} (epoch {trainer.start_epoch + 1} "
                  f"from step {trainer.start_step}; {where})", file=sys.stderr, flush=True)
    if trainer.start_epoch >= trainer.cfg.epochs:
        raise HpmlError(f"{checkpoint} has already trained {trainer.start_epoch} epochs; "
                        f"set trainer.epochs above {trainer.start_epoch} to train on")


def _split(layout: dict[str, Any]) -> str:
    ranks = f"{layout['world_size']} rank{'s' * (layout['world_size'] > 1)}"
    return (f"strategy={layout['strategy']} on {ranks}, {layout['replicas']} x batch {layout['batch_size']} "
            f"a step")


def _position(state: dict[str, Any], then: dict[str, Any], now: dict[str, Any], folder: RunFolder) -> int:
    """The batches of the stopped epoch done, in the new split: the same samples of the epoch's
    order (every split reads the same seeded permutation, rank r every ranks-th of it)."""
    step = state.get("step", 0)
    if not step:
        return 0
    samples = step * then["batch_size"] * then["replicas"]
    per_step = now["batch_size"] * now["replicas"]
    if samples % (per_step * now["grad_accum_steps"]):
        raise HpmlError(f"resume={folder}: it stopped in epoch {state['epoch'] + 1} after {samples} samples, which "
                        f"is no optimizer-step boundary of {now['replicas']} x batch {now['batch_size']} x "
                        f"{now['grad_accum_steps']} accumulated; resume with a split that divides {samples} (e.g. "
                        f"the run's own: {then['replicas']} x dataset.batch_size={then['batch_size']}), or resume it "
                        f"as it was and change the split at the next epoch's checkpoint")
    return samples // per_step


def _continue_schedule(strategy: Strategy, trainer: Trainer, now: dict[str, Any], fresh_lrs: list[float]) -> str:
    """The schedule at this config's learning rates (optimizer.scale_lr_with_world_size counts the
    new ranks), at the step it has reached in the new split's steps per epoch."""
    scheduler = strategy.scheduler
    if scheduler is None:
        return "no schedule"
    per_epoch = math.ceil(now["batches_per_epoch"] / now["grad_accum_steps"])
    step = trainer.start_epoch * per_epoch + trainer.start_step // now["grad_accum_steps"]
    scheduler.base_lrs = fresh_lrs
    scheduler.last_epoch = step
    for group, base, factor in zip(strategy.optimizer.param_groups, fresh_lrs, scheduler.lr_lambdas):
        group["initial_lr"], group["lr"] = base, base * factor(step)
    scheduler._last_lr = [g["lr"] for g in strategy.optimizer.param_groups]  # what get_last_lr() reads
    return f"the schedule at optimizer step {step}, lr {strategy.optimizer.param_groups[0]['lr']:.3g}"
