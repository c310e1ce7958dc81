"""Experiment loggers: TensorBoard and Weights & Biases (main rank)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hpml_bench.callbacks.base import Callback


@dataclass
class LoggerConfig:
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "hpml"
    wandb_entity: Optional[str] = None
    # offline: logs under <run>/wandb, `wandb sync` uploads later; online needs WANDB_API_KEY.
    wandb_mode: str = "offline"


def _numbers(record: dict) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and k != "epoch"}


class TensorBoardLogger(Callback):
    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter  # imported only when asked for

        self.writer = SummaryWriter(str(log_dir))

    def on_epoch_end(self, trainer, record: dict) -> None:
        for key, value in _numbers(record).items():
            self.writer.add_scalar(key, value, record["epoch"])
        self.writer.flush()

    def on_fit_end(self, trainer) -> None:
        self.writer.close()


class WandbLogger(Callback):
    def __init__(self, cfg: LoggerConfig, run_dir: Path, config: dict[str, Any]):
        import wandb  # imported only when asked for: it is slow to import

        self.run = wandb.init(project=cfg.wandb_project, entity=cfg.wandb_entity, mode=cfg.wandb_mode,
                              dir=str(run_dir), name=run_dir.name, config=config, reinit="finish_previous")

    def on_epoch_end(self, trainer, record: dict) -> None:
        self.run.log(_numbers(record), step=record["epoch"])

    def on_fit_end(self, trainer) -> None:
        self.run.finish()
