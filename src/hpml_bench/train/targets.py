"""Time to target, early stopping and the monitored metric: what the trainer asks after each
validation.

A target is two plain keys, `trainer.target.metric=val_acc trainer.target.value=0.94`: Hydra's
override grammar refuses an unquoted `>=`, and two keys need no quoting in a shell, a sweep, a
bench file or a SLURM script. Its text form ("val_acc>=0.94") is what summary.json and the tables
show. Time to target counts the training and validation wall time from the first step (the sum
of epochs.csv's run_s and val_s up to the validation that met it); start-up, checkpoint and
report writes between epochs are left out (docs/runs.md says why).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

from hpml_bench.errors import HpmlError
from hpml_bench.registry import did_you_mean

MODES = ("auto", "max", "min")
OBJECTIVES = ("monitor", "time_to_target")


def metric_mode(metric: str, mode: str) -> str:
    """max or min: `mode`, or for auto, min for a loss and max for every other score."""
    return mode if mode != "auto" else ("min" if metric.endswith("loss") else "max")


def _check_mode(key: str, mode: str) -> None:
    if mode not in MODES:
        raise HpmlError(f"{key}={mode}: use auto, max or min")


@dataclass
class TargetConfig:
    # The logged metric the target is on (val_acc, val_loss, val_miou, ...); null: no target.
    metric: Optional[str] = None
    value: Optional[float] = None  # the value to reach: >= for a metric better higher, <= for one better lower
    mode: str = "auto"  # max (met at >= value) | min (met at <= value) | auto: min for a *loss, else max

    def __post_init__(self):
        _check_mode("trainer.target.mode", self.mode)
        if (self.metric is None) != (self.value is None):
            raise HpmlError("a target needs both trainer.target.metric and trainer.target.value, "
                            "e.g. trainer.target.metric=val_acc trainer.target.value=0.94")

    @property
    def text(self) -> Optional[str]:
        """'val_acc>=0.94', or None without a target."""
        if self.metric is None:
            return None
        return f"{self.metric}{'>=' if metric_mode(self.metric, self.mode) == 'max' else '<='}{self.value:g}"

    def met(self, scores: dict[str, Any]) -> bool:
        score = scores.get(self.metric)
        if score is None:
            return False
        return score >= self.value if metric_mode(self.metric, self.mode) == "max" else score <= self.value


@dataclass
class EarlyStopConfig:
    # Validations in a row without improvement that end the run; null: no early stopping.
    patience: Optional[int] = None
    monitor: Optional[str] = None  # the metric it watches (any logged one); null: trainer.monitor
    min_delta: float = 0.0  # a change smaller than this is no improvement
    mode: str = "auto"  # max | min | auto: min for a *loss, else max

    def __post_init__(self):
        _check_mode("trainer.early_stop.mode", self.mode)
        if self.patience is not None and self.patience <= 0:
            raise HpmlError(f"trainer.early_stop.patience={self.patience} must be 1 or more (null: no early stopping)")
        if self.min_delta < 0:
            raise HpmlError(f"trainer.early_stop.min_delta={self.min_delta} must be 0 or more")


@dataclass
class GoalsConfig:
    """The trainer's goal keys (TrainerConfig builds on it), beside the code that acts on them."""

    # Time to target: trainer.target.metric=val_acc trainer.target.value=0.94 (two keys: Hydra's
    # grammar refuses an unquoted >=); every run then records time_to_target_s and epochs_to_target.
    target: TargetConfig = field(default_factory=TargetConfig)
    stop_at_target: bool = False  # end the run at the first validation that meets trainer.target
    # Validate every N training batches as well as at each epoch's end, so time to target is not
    # rounded up to whole epochs; null: at epoch ends only. A multiple of grad_accum_steps.
    val_every_steps: Optional[int] = None
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)  # stop when a metric stops improving
    monitor: Optional[str] = None  # the metric best.pt follows (any logged one); null: the task's (val_acc, val_miou)
    monitor_mode: str = "auto"  # max | min | auto: min for a *loss, else max
    # What a trial of `hpml train -m` returns to its sweeper (hydra/sweeper=optuna optimizes it):
    # monitor (the best trainer.monitor value) | time_to_target (seconds; +inf when never reached).
    objective: str = "monitor"


def check_goals(cfg, logged: Optional[list[str]] = None) -> None:
    """Refuse, in one line before anything trains, a goal on a metric the run never logs and
    settings that contradict each other (`cfg` is the TrainerConfig)."""
    _check_mode("trainer.monitor_mode", cfg.monitor_mode)
    if cfg.objective not in OBJECTIVES:
        raise HpmlError(f"trainer.objective={cfg.objective}: use monitor or time_to_target")
    for key, metric in () if logged is None else (("trainer.target.metric", cfg.target.metric), ("trainer.monitor", cfg.monitor),
                        ("trainer.early_stop.monitor", cfg.early_stop.monitor)):
        if metric is not None and metric not in logged:
            raise HpmlError(f"{key}={metric} is not a metric this run logs{did_you_mean(metric, logged)}; "
                            f"use one of: {', '.join(logged)}")
    if cfg.target.metric is None and (cfg.stop_at_target or cfg.objective == "time_to_target"):
        what = "trainer.stop_at_target=true" if cfg.stop_at_target else "trainer.objective=time_to_target"
        raise HpmlError(f"{what} needs a target: add trainer.target.metric=<metric> trainer.target.value=<value>")
    if cfg.val_every_steps is not None and (cfg.val_every_steps <= 0 or cfg.val_every_steps % cfg.grad_accum_steps):
        raise HpmlError(f"trainer.val_every_steps={cfg.val_every_steps} must be a positive multiple of "
                        f"trainer.grad_accum_steps={cfg.grad_accum_steps} (validation between optimizer steps)")


class Goals:
    """The validations of a run, the clock they are timed on, the target, early stopping and the
    monitored metric. The trainer calls see() after each validation; every rank sees the same
    (reduced) scores and times, so every rank decides the same."""

    def __init__(self, cfg, task_monitor: str):
        self.target: TargetConfig = cfg.target
        self.stop_at_target = cfg.stop_at_target
        self.objective = cfg.objective
        self.monitor = cfg.monitor or task_monitor
        self.monitor_mode = metric_mode(self.monitor, cfg.monitor_mode)
        es: EarlyStopConfig = cfg.early_stop
        self.patience, self.min_delta = es.patience, es.min_delta
        self.es_monitor = es.monitor or self.monitor
        same = es.mode == "auto" and self.es_monitor == self.monitor  # trainer.monitor's mode too
        self.es_mode = self.monitor_mode if same else metric_mode(self.es_monitor, es.mode)
        self.validations: list[dict[str, Any]] = []  # epochs (trained so far), elapsed_s, val_s, the scores
        self.clock_s = 0.0  # training + validation seconds before the current epoch
        self.stop_reason: Optional[str] = None  # target | early_stop, once a goal ends the run
        self.start_epoch()
        self._reset()

    def _reset(self) -> None:
        self.reached: Optional[dict[str, Any]] = None
        self.es_best: Optional[float] = None
        self.es_bad = 0  # validations in a row without improvement (the patience counter)

    # -- the clock ------------------------------------------------------------------------
    def start_epoch(self) -> None:
        self._epoch_start = time.perf_counter()
        self._mid_val_s = 0.0  # this epoch's mid-epoch validations, in its val_s

    def elapsed_in_epoch(self) -> float:
        """This rank's wall seconds since the epoch's first step (mid-epoch validations included)."""
        return time.perf_counter() - self._epoch_start

    # -- validations ----------------------------------------------------------------------
    def see(self, scores: dict[str, Any], epoch: int, step: int, steps: int, elapsed_s: float) -> bool:
        """A mid-epoch validation after `step` of `steps` batches; True: a goal ends the run here."""
        self._mid_val_s += scores["val_s"]
        entry = {"epochs": epoch + step / steps, "elapsed_s": elapsed_s, "val_s": scores["val_s"], **_scores(scores)}
        return self._judge(entry, live=True)

    def see_epoch(self, record: dict[str, Any]) -> bool:
        """The epoch's end (its record holds run_s and val_s, mid-epoch validations included)."""
        self.clock_s += record["run_s"] + record["val_s"]
        if self.stop_reason is not None:  # the epoch ended at a mid-epoch validation: seen already
            return True
        own = record["val_s"] - self._mid_val_s  # the epoch-end validation's seconds
        return self._judge({"epochs": record["epoch"], "elapsed_s": self.clock_s, "val_s": own, **_scores(record)}, live=True)

    def _judge(self, entry: dict[str, Any], live: bool) -> bool:
        if live:
            self.validations.append(entry)
        if self.reached is None and self.target.metric is not None and self.target.met(entry):
            self.reached = {"time_to_target_s": entry["elapsed_s"], "epochs_to_target": _epochs(entry["epochs"])}
            if live and self.stop_at_target:
                self.stop_reason = "target"
        score = entry.get(self.es_monitor)
        if self.patience is not None and score is not None:
            better = self.es_best is None or (score > self.es_best + self.min_delta if self.es_mode == "max"
                                               else score < self.es_best - self.min_delta)
            self.es_best, self.es_bad = (score, 0) if better else (self.es_best, self.es_bad + 1)
            if live and self.stop_reason is None and self.es_bad >= self.patience:
                self.stop_reason = "early_stop"
        return self.stop_reason is not None

    # -- what a run reports ---------------------------------------------------------------
    def best(self, metric: str, mode: str) -> tuple[Optional[float], Optional[float]]:
        """(best value, the epoch it was seen at) of `metric` over the validations."""
        seen = [v for v in self.validations if v.get(metric) is not None]
        if not seen:
            return None, None
        pick = (max if mode == "max" else min)(seen, key=lambda v: v[metric])
        return pick[metric], _epochs(pick["epochs"])

    def summary(self) -> dict[str, Any]:
        """summary.json's target, early-stop, monitor and objective keys."""
        best, best_epoch = self.best(self.monitor, self.monitor_mode)
        reached = self.reached or {}
        out = {"target": self.target.text, "target_reached": None if self.target.metric is None else bool(reached),
               "time_to_target_s": reached.get("time_to_target_s"), "epochs_to_target": reached.get("epochs_to_target"),
               "stop_reason": self.stop_reason, "monitor": self.monitor, "monitor_mode": self.monitor_mode,
               "monitor_best": best, "monitor_best_epoch": best_epoch, "validations": len(self.validations)}
        if self.target.metric is not None:  # how close a run that never got there came
            out["target_best"] = self.best(self.target.metric, metric_mode(self.target.metric, self.target.mode))[0]
        if self.patience is not None:
            out["early_stop"] = {"monitor": self.es_monitor, "mode": self.es_mode, "patience": self.patience,
                                 "min_delta": self.min_delta, "best": self.es_best, "patience_count": self.es_bad}
        out["objective"] = self.objective_value(best)
        return out

    def objective_value(self, best: Optional[float]) -> dict[str, Any]:
        """What a sweep's trial returns: the best monitored value, or the time to target; value None
        when there is none (never reached: the sweep counts it as the worst score)."""
        if self.objective == "time_to_target":
            return {"name": f"time_to_target_s ({self.target.text})", "direction": "minimize",
                    "value": (self.reached or {}).get("time_to_target_s")}
        return {"name": f"best {self.monitor}", "direction": "maximize" if self.monitor_mode == "max" else "minimize",
                "value": best}

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self, mid_epoch: bool) -> dict[str, Any]:
        """The validations and the clock (with a mid-epoch stop, this epoch's seconds so far)."""
        partial = self.elapsed_in_epoch() if mid_epoch else 0.0
        return {"validations": list(self.validations), "clock_s": self.clock_s + partial,
                "patience_count": self.es_bad, "early_stop_best": self.es_best}

    def load_state_dict(self, state: Optional[dict[str, Any]], history: list[dict[str, Any]]) -> None:
        """Continue from a checkpoint: the clock goes on from what it recorded, and the goals are
        judged again over its validations under this run's settings (a target or a patience
        added on resume counts the earlier validations too)."""
        if state is None:  # a checkpoint from before goals: its epochs are its validations
            clock, state = 0.0, {"validations": []}
            for record in history:
                clock += record["run_s"] + record["val_s"]
                state["validations"].append({"epochs": record["epoch"], "elapsed_s": clock, **_scores(record)})
            state["clock_s"] = clock
        self.validations, self.clock_s = list(state["validations"]), state["clock_s"]
        self._reset()
        for entry in self.validations:
            self._judge(entry, live=False)


def _scores(record: dict[str, Any]) -> dict[str, float]:
    """The scores of a record (train_*, val_*; not the times train_s / val_s)."""
    return {k: v for k, v in record.items() if k.startswith(("train_", "val_")) and k not in ("train_s", "val_s")}


def _epochs(epoch: float) -> float | int:
    """Whole epochs as an int, a mid-epoch point as a fraction (2.5: half-way through epoch 3)."""
    return int(epoch) if float(epoch).is_integer() else round(epoch, 4)
