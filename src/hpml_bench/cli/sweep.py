"""`hpml train -m ...` as a search: every trial returns its objective to the sweeper
(`hydra/sweeper=optuna` minimizes or maximizes it), a failed or refused trial is a bad score and
the sweep goes on, and the Optuna sweeper's direction follows the objective unless given.
"""
from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import sys
import traceback
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from hpml_bench.errors import HpmlError
from hpml_bench.runfolder import RunFolder
from hpml_bench.tasks import TASKS
from hpml_bench.train.config import compose_train
from hpml_bench.train.targets import metric_mode

DIRECTION_KEY = "hydra.sweeper.direction"


def is_optuna(args: list[str]) -> bool:
    return any(a.lstrip("+") == "hydra/sweeper=optuna" for a in args)


def objective_direction(args: list[str]) -> str:
    """maximize | minimize: what the trials of `args` return (trainer.objective, trainer.monitor),
    read from the config composed without the swept keys (they vary per trial; the objective's
    direction does not). Composed only, not checked: a trial's refused values are its own failure."""
    try:
        parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    except HydraException as exc:
        raise HpmlError(str(exc).strip().splitlines()[0]) from None
    fixed = [o.input_line for o in parsed if not o.is_sweep_override() and not o.is_hydra_override()]
    trainer = (cfg := compose_train(fixed)).trainer
    if trainer.objective == "time_to_target":
        return "minimize"
    task = cfg.task if cfg.task in TASKS else cfg.model.get("task", "classification")
    monitor = trainer.monitor or TASKS.get(task if task in TASKS else "classification").monitor
    return "maximize" if metric_mode(monitor, trainer.monitor_mode) == "max" else "minimize"


def with_optuna_direction(args: list[str]) -> list[str]:
    """The Optuna sweeper minimizes unless told: give it the objective's direction, and refuse a
    direction that contradicts it (a search for the worst learning rate) in one line."""
    if not is_optuna(args):
        return args
    if importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
        raise HpmlError("hydra/sweeper=optuna needs the Optuna sweeper: pip install 'hpml-bench[sweep]' "
                        "(hydra-optuna-sweeper)")
    wanted = objective_direction(args)
    given = next((a.split("=", 1)[1] for a in args if a.split("=", 1)[0] == DIRECTION_KEY), None)
    if given is None:
        return [*args, f"{DIRECTION_KEY}={wanted}"]
    if given != wanted:
        raise HpmlError(f"{DIRECTION_KEY}={given}, but the trials return {objective_name(args)}, which is better "
                        f"{'higher' if wanted == 'maximize' else 'lower'}; set {DIRECTION_KEY}={wanted} or leave it out")
    return args


def objective_name(args: list[str]) -> str:
    objective = next((a.split("=", 1)[1] for a in args if a.startswith("trainer.objective=")), "monitor")
    return "the time to target" if objective == "time_to_target" else "the best monitored value (trainer.monitor)"


def bad_score(hydra_cfg) -> float:
    """The worst value for the sweeper's direction (+inf when minimizing or unknown)."""
    direction = str(hydra_cfg.sweeper.get("direction", "minimize")) if "sweeper" in hydra_cfg else "minimize"
    return -math.inf if "max" in direction else math.inf


def trial_objective(folder: RunFolder, hydra_cfg) -> float:
    """A finished trial's objective (summary.json's `objective`); the bad score without one (a
    target never reached, a run that did not finish)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        value = folder.read_summary()["objective"]["value"]
        if value is not None:
            return float(value)
    return bad_score(hydra_cfg)


def failed_trial(exc: BaseException, folder: RunFolder, hydra_cfg) -> float:
    """One line on stderr, failed.json in the trial's folder (`hpml report` lists it), and the bad
    score the sweeper gets instead of an exception that would end the whole sweep."""
    if os.environ.get("HPML_DEBUG") == "1":
        traceback.print_exception(exc)
    lines = str(exc).strip().splitlines() or [""]
    line = lines[0] if isinstance(exc, HpmlError) else f"{type(exc).__name__}: {lines[-1]}"
    score = bad_score(hydra_cfg)
    overrides = list(hydra_cfg.overrides.task)
    print(f"error: trial {hydra_cfg.job.num} ({' '.join(overrides)}): {line}; the sweep goes on, this trial "
          f"scores {score}", file=sys.stderr, flush=True)
    record: dict[str, Any] = {"error": line, "exit_code": getattr(exc, "exit_code", 1), "overrides": overrides}
    with contextlib.suppress(OSError, HpmlError):  # a full disk must not end the sweep either
        folder.write_json(folder.failed, record)
    return score
