"""Experiment loggers: TensorBoard and Weights & Biases (main rank only).

Both get the same scalars: per-step `train/*` (loss, learning rate, step time, samples/s,
achieved TFLOP/s and MFU where known)
every `log_every_n_steps` steps, and per-epoch `epoch/*` (the epoch record). TensorBoard
also gets the config as hparams; W&B the config, tags/group, the summary, and the epoch
table as a W&B table. A resumed run continues the same W&B run (its id is kept in the run folder).
"""
from __future__ import annotations

import netrc
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

from hpml_bench.callbacks.base import Callback
from hpml_bench.callbacks.report import run_summary
from hpml_bench.console import make_console
from hpml_bench.errors import HpmlError
from hpml_bench.runfolder import RunFolder
from hpml_bench.runfolder.writes import atomic_write_text

_WANDB_MODES = ("auto", "online", "offline", "disabled")
# The goals' numbers both loggers report at the end (summary.json's keys; absent when None).
GOAL_KEYS = ("time_to_target_s", "epochs_to_target", "monitor_best")


@dataclass
class LoggerConfig:
    tensorboard: bool = False  # write TensorBoard events under <run>/tb
    wandb: bool = False  # log to Weights & Biases under <run>/wandb
    wandb_project: str = "hpml"  # W&B project
    wandb_entity: Optional[str] = None  # W&B team or user; null: the account's default
    # auto: online when W&B credentials are present (WANDB_API_KEY or a netrc login), else offline
    # (logs under <run>/wandb; `wandb sync` uploads them later). WANDB_MODE, when set, wins over auto.
    wandb_mode: str = "auto"
    log_every_n_steps: int = 50  # per-step scalars; the loss is read from the device only then
    tags: list[str] = field(default_factory=list)  # added to the automatic strategy / world-size tags
    group: Optional[str] = None  # W&B group (hpml bench sets the bench name)

    def __post_init__(self):
        if self.wandb_mode not in _WANDB_MODES:
            raise HpmlError(f"logger.wandb_mode={self.wandb_mode}: use one of {', '.join(_WANDB_MODES)}")
        if self.log_every_n_steps <= 0:
            raise HpmlError(f"logger.log_every_n_steps={self.log_every_n_steps} must be positive")


def wandb_credentials_present() -> bool:
    """WANDB_API_KEY, or a netrc entry for the W&B host (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(mode: str) -> str:
    """auto -> WANDB_MODE if set, else online with credentials, offline without."""
    if mode != "auto":
        return mode
    return os.environ.get("WANDB_MODE") or ("online" if wandb_credentials_present() else "offline")


def epoch_scalars(record: dict) -> dict[str, float]:
    """The epoch record's numbers (times, memory, scores) as `epoch/<key>`."""
    return {f"epoch/{k}": float(v) for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"}


def flat_config(config: dict, prefix: str = "") -> dict[str, Any]:
    """{"model": {"name": "mlp"}} -> {"model.name": "mlp"}; lists and None as text (hparams take scalars)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


class StepLogger(Callback):
    """Base of the loggers: every n-th training step, `log_step(global_step, scalars)` gets
    loss, lr, mean step time and samples/s since the last log.

    Only then is the loss read from the device (`.item()` waits for it), so the other steps
    add no host sync."""

    every = 1

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        raise NotImplementedError

    def on_train_epoch_start(self, trainer) -> None:
        self.step_in_epoch = self.window_steps = 0
        self.window_start = time.perf_counter()

    def on_validation_end(self, trainer, record: dict) -> None:
        # a validation inside the epoch (trainer.val_every_steps) is no training step's time
        if hasattr(self, "window_start"):
            self.window_start += record["val_s"]

    def on_step_end(self, trainer, out) -> None:
        self.step_in_epoch += 1
        self.window_steps += 1
        if self.step_in_epoch % self.every:
            return
        now = time.perf_counter()
        elapsed, steps = now - self.window_start, self.window_steps
        self.window_start, self.window_steps = now, 0
        # A pipeline's first stage sees no outputs; count the global batch the loader gives.
        samples = steps * trainer.train_loader.batch_size * trainer.strategy.data_parallel[0]
        scalars = {"train/lr": trainer.strategy.optimizer.param_groups[0]["lr"], "train/step_s": elapsed / steps,
                   "train/samples_per_s": samples / elapsed if elapsed > 0 else 0.0}
        meter = getattr(trainer, "throughput", None)
        rates = meter.rates(samples, elapsed) if meter is not None else {}
        scalars.update({f"train/{k}": v for k, v in rates.items() if v is not None})  # tflops, mfu
        if out.n:
            scalars["train/loss"] = out.loss.item()
        self.log_step(trainer.epoch * trainer.steps_per_epoch + self.step_in_epoch, scalars)


class TensorBoardLogger(StepLogger):
    def __init__(self, cfg: LoggerConfig, log_dir: Path, config: dict[str, Any], info: dict[str, Any]):
        from torch.utils.tensorboard import (
            SummaryWriter,  # imported only when asked for
        )

        self.writer = SummaryWriter(str(log_dir))
        self.every = cfg.log_every_n_steps
        self.config, self.info = config, info

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)

    def on_epoch_end(self, trainer, record: dict) -> None:
        for key, value in epoch_scalars(record).items():
            self.writer.add_scalar(key, value, record["epoch"])
        self.writer.flush()

    def on_fit_end(self, trainer) -> None:
        summary = run_summary(trainer)
        medians = {k: summary[k] for k in ("median_run_s", "median_samples_per_s", "median_tflops", "median_mfu",
                                           *GOAL_KEYS) if summary.get(k) is not None}
        metrics = {f"hparam/{k}": float(v) for k, v in {**summary["final"], **medians}.items()}
        hparams = {**flat_config(self.config), "world_size": self.info["world_size"]}
        self.writer.add_hparams(hparams, metrics, run_name=".")  # "." = this folder, beside the scalars
        self.writer.close()


class WandbLogger(StepLogger):
    def __init__(self, cfg: LoggerConfig, folder: RunFolder, config: dict[str, Any], info: dict[str, Any]):
        import wandb  # imported only when asked for: it is slow to import

        self.wandb = wandb
        self.mode = resolve_wandb_mode(cfg.wandb_mode)
        id_file = folder.wandb_id
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
        tags = [info["strategy"], f"world_size={info['world_size']}", *cfg.tags]
        self.run = wandb.init(project=cfg.wandb_project, entity=cfg.wandb_entity, mode=self.mode, dir=str(folder.path),
                              name=folder.name, id=run_id, resume="allow", config={**config, "run_info": info},
                              tags=tags, group=cfg.group, reinit="finish_previous")
        if not id_file.is_file():
            atomic_write_text(id_file, run_id + "\n")
        self.run.define_metric("global_step")
        self.run.define_metric("train/*", step_metric="global_step")
        self.run.define_metric("epoch")
        self.run.define_metric("epoch/*", step_metric="epoch")
        self.every = cfg.log_every_n_steps
        self.console = make_console()
        self.console.print(self._where())

    def _where(self) -> str:
        if self.mode == "offline":
            return (f"W&B offline (no WANDB_API_KEY or `wandb login` found): upload later with "
                    f"`wandb sync {Path(self.run.dir).parent}`")
        return f"W&B {self.mode}: run {self.run.id}" + (f" at {self.run.url}" if self.mode == "online" else "")

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log({**scalars, "global_step": step})

    def on_epoch_end(self, trainer, record: dict) -> None:
        self.run.log({**epoch_scalars(record), "epoch": record["epoch"]})

    def on_fit_end(self, trainer) -> None:
        import pandas as pd


        table = pd.DataFrame(trainer.history).drop(columns=["ranks", "gpu_ranks"], errors="ignore")
        self.run.log({"epochs_table": self.wandb.Table(dataframe=table)})
        summary = run_summary(trainer)
        self.run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        self.run.summary.update({f"final/{k}": v for k, v in summary["final"].items()})
        if summary["target"] is not None:  # "not reached" says so: target_reached false, no time
            self.run.summary.update({"target": summary["target"], "target_reached": summary["target_reached"]})
        self.run.define_metric("validation/elapsed_s")
        self.run.define_metric("validation/*", step_metric="validation/elapsed_s")  # a metric against wall time
        for entry in trainer.goals.validations:
            self.run.log({f"validation/{k}": v for k, v in entry.items()})
        self.run.finish()
        self.wandb.teardown()  # flush and stop W&B's service process now, not at interpreter exit
        self.console.print(self._where())
