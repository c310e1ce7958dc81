"""Callbacks and the factory that picks them from the config."""
from __future__ import annotations

import sys
from typing import Any

from hpml_bench.callbacks.backbone_freeze import BackboneFreeze
from hpml_bench.callbacks.base import Callback
from hpml_bench.callbacks.checkpoint import Checkpointer
from hpml_bench.callbacks.data_stall import DataStallWarning
from hpml_bench.callbacks.hardware import HardwareMonitor
from hpml_bench.callbacks.loggers import LoggerConfig, TensorBoardLogger, WandbLogger
from hpml_bench.callbacks.profiler import TorchProfiler
from hpml_bench.callbacks.progress import ProgressBar
from hpml_bench.callbacks.report import EpochReport
from hpml_bench.callbacks.startup import StartupClock
from hpml_bench.callbacks.timer import EpochTimer
from hpml_bench.runfolder import RunFolder


def build_callbacks(cfg, strategy, task, folder: RunFolder, info: dict[str, Any], config_dict: dict) -> list[Callback]:
    """The timer first (it fills the record the others read), then observers by config."""
    callbacks: list[Callback] = [EpochTimer(cfg.trainer.timing)]
    if cfg.trainer.checkpoint_every > 0:
        callbacks.append(Checkpointer(folder, cfg.trainer.checkpoint_every, cfg.trainer.on_write_error,
                                      cfg.trainer.keep_checkpoints))
    if cfg.model.freeze_backbone:  # every rank: it sets BatchNorm modes and requires_grad
        callbacks.append(BackboneFreeze(cfg.trainer.unfreeze_at_epoch, announce=strategy.is_main))
    if cfg.profiler.name == "torch":  # every rank traces its own steps
        callbacks.append(TorchProfiler(cfg.profiler, folder, strategy.rank, strategy.device))
    # every rank of a CUDA run (its GPUs' state is gathered): after the timer, so the gathering
    # at an epoch's end is outside run_s
    if HardwareMonitor.applies(strategy) and cfg.trainer.gpu_sample_s is not None:
        callbacks.append(HardwareMonitor(info, cfg.trainer.gpu_sample_s))
    if not strategy.is_main:
        return callbacks
    show_bar = cfg.trainer.progress == "always" or (cfg.trainer.progress == "auto" and sys.stdout.isatty())
    if show_bar:
        callbacks.append(ProgressBar())
    callbacks.append(StartupClock(info))  # before EpochReport, which writes info to summary.json
    callbacks.append(EpochReport(folder, info))
    callbacks.append(DataStallWarning())
    logger: LoggerConfig = cfg.logger
    if logger.tensorboard:
        callbacks.append(TensorBoardLogger(logger, folder.tb, config_dict, info))
    if logger.wandb:
        callbacks.append(WandbLogger(logger, folder, config_dict, info))
    return callbacks


__all__ = ["Callback", "build_callbacks"]
