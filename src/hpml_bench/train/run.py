"""The body of `hpml train`: build every part from the config, then fit."""
from __future__ import annotations

import math
import os
import random
import socket
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from hpml_bench.callbacks import build_callbacks
from hpml_bench.data import build_loaders
from hpml_bench.data.labels import class_counts
from hpml_bench.errors import HpmlError
from hpml_bench.faults.lost_peer import lost_peer, rank_hosts
from hpml_bench.faults.lost_worker import quiet_sigchld, with_checkpoint, worker_lost
from hpml_bench.faults.preemption import StopRequest, report_stop, restart_resume, worker_exit_code
from hpml_bench.models import build_model_from_config, count_parameters
from hpml_bench.models.source import SourceConfig
from hpml_bench.runfolder import RunFolder
from hpml_bench.runfolder.lock import RunLock
from hpml_bench.runfolder.provenance import record_config_dir, record_model_source
from hpml_bench.strategies import StepSettings, Strategy, build_strategy
from hpml_bench.strategies.ema import WeightEma
from hpml_bench.tasks import build_task
from hpml_bench.tasks.base import balanced_weights
from hpml_bench.train.config import TrainConfig, to_train_config
from hpml_bench.train.flops import measure as measure_flops
from hpml_bench.train.optim import build_optimizer, build_scheduler
from hpml_bench.train.resume import resume
from hpml_bench.train.trainer import Trainer


def run_training(dcfg: DictConfig, run_dir: Path | RunFolder, overrides: list[str] = (),
                 choices: dict | None = None) -> list[dict]:
    """Train as the config says, writing into the run folder (made here when missing);
    returns the per-epoch records."""
    cfg = to_train_config(dcfg)
    _pin_image_size(dcfg, cfg)
    folder = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
    # A requeued job (SLURM_RESTART_COUNT) or torchrun restart continues its own folder; this
    # also covers jobs that do not start through `hpml train` (submitit sweeps).
    checkpoint = folder.check_start(cfg.resume or restart_resume(folder))
    t = cfg.trainer
    strategy = build_strategy(cfg.strategy, StepSettings(cfg.device, t.precision, t.channels_last, t.compile, t.grad_clip_norm,
                                                          t.on_nonfinite == "skip", t.auto_microbatch,
                                                          named_ranges=cfg.profiler.name == "torch", split=t.step_split,
                                                          agree_steps=t.auto_microbatch_agree_steps))
    type(strategy).preflight(cfg, strategy.world_size)
    stop = StopRequest(t.requeue_signal, t.stop_check_every)  # preemption, Ctrl-C (handlers from fit on)
    strategy.setup()
    lock = None
    try:
        hosts = rank_hosts(strategy)
        folder = _shared_run_dir(strategy, folder)
        # Rank 0 makes the folder when the caller did not (Hydra makes it for `hpml train`; a
        # script calling run_training need not) and locks it, before any data is loaded.
        lock = _take_run_folder(strategy, folder)
        folder.check_seen_by(strategy.rank, hosts)  # a multi-node rule: every node sees rank 0's folder
        trainer = _build_trainer(cfg, dcfg, strategy, folder, choices or {}, stop)
        if checkpoint is not None:  # refused in one line when this config cannot continue it
            resume(trainer, strategy, checkpoint, cfg, RunFolder(checkpoint.parent.parent))
        if strategy.is_main:
            _write_config(dcfg, folder, overrides)
            record_model_source(folder, cfg.model)
        stop.install()  # only now: a signal during start-up still ends the process at once
        # A lost loader worker is found at a batch boundary, never mid-step (faults/lost_worker.py).
        with quiet_sigchld():
            try:
                history = trainer.fit()
                if trainer.stopped_at:  # a stop request: every rank joins the save (rank 0 writes)
                    strategy.save_checkpoint(folder.last, trainer.state_dict())
            except RuntimeError as exc:  # a lost worker (a batch boundary), a peer lost in a collective
                _raise_fault(exc, trainer, strategy, folder, hosts)
                _raise_if_outside_model(cfg, exc)
                raise
            except (ValueError, TypeError, AssertionError, IndexError) as exc:  # a model's own checks
                _raise_if_outside_model(cfg, exc)
                raise
        if trainer.stopped_at and strategy.is_main:
            report_stop(stop, trainer.stopped_at, folder.last, folder)
    finally:
        strategy.teardown()
        stop.uninstall()
        if lock is not None:
            lock.release()
    if trainer.stopped_at:
        raise SystemExit(worker_exit_code(stop, strategy.is_main))
    return history


def _raise_fault(exc: RuntimeError, trainer: Trainer, strategy: Strategy, folder: RunFolder, hosts) -> None:
    """A lost loader worker or a lost peer rank as its one line (the fault modules say which);
    returns for anything else."""
    lost = worker_lost(exc, trainer.train_loader)
    if lost is not None:
        # One process: the trainer stops at its last optimizer step and that checkpoint is
        # saved. Several ranks: the others wait in a collective; their launcher ends them.
        stopped_at = trainer.stop_at_last_step() if strategy.world_size == 1 else None
        if stopped_at is not None:
            strategy.save_checkpoint(folder.last, trainer.state_dict())
        raise with_checkpoint(lost, stopped_at, folder.last, folder) from exc
    line = lost_peer(exc, hosts, strategy.rank)  # a peer rank died: name it in one line
    if line is None:
        return  # not a fault: the caller decides
    # A rank that dies of this error closes its own connections too: the ranks that
    # notice later would name it, so every rank reports the first diagnosis.
    raise HpmlError(strategy.first_failure(line)) from None


def _raise_if_outside_model(cfg: TrainConfig, exc: Exception) -> None:
    """An outside model (torchvision, timm, the user's own) that fails inside the loop: one
    line naming it and its error. hpml's own models' errors stay as they are (a bug of hpml's)."""
    if isinstance(exc, (HpmlError, torch.OutOfMemoryError)) or not isinstance(cfg.model, SourceConfig):
        return  # an out-of-memory is the OOM fault's to report
    line = next((s.strip() for s in str(exc).splitlines() if s.strip()), "")[:200]
    raise HpmlError(f"{cfg.model.describe_build()} failed in training ({type(exc).__name__}: {line}); it ran on "
                     f"dummy batches before the run: check it with this run's settings (HPML_DEBUG=1 shows where)") from exc


def _take_run_folder(strategy: Strategy, folder: RunFolder) -> RunLock | None:
    """Rank 0 checks the run folder is writable and takes its lock; every rank learns the
    outcome, so when rank 0 refuses (a live run holds the folder, a full disk) the other ranks
    stop with its line at once instead of waiting in a collective until strategy.timeout_s."""
    lock, failure = None, None
    if strategy.is_main:
        try:
            folder.check_writable()
            lock = folder.take_lock()
        except HpmlError as exc:
            failure = exc
    shared = strategy.broadcast_object(None if failure is None else (str(failure), failure.exit_code))
    if failure is not None:
        raise failure
    if shared is not None:
        error = HpmlError(shared[0])
        error.exit_code = shared[1]
        raise error
    return lock


def _shared_run_dir(strategy: Strategy, folder: RunFolder) -> RunFolder:
    """Rank 0's run folder for every rank (under torchrun each rank named its own)."""
    shared = RunFolder(strategy.broadcast_object(str(folder.path)))
    if shared != folder:
        folder.remove_if_empty()
    return shared


def _build_trainer(cfg: TrainConfig, dcfg: DictConfig, strategy: Strategy, folder: RunFolder, choices: dict,
                   stop=None) -> Trainer:
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    train_loader, val_loader = build_loaders(cfg.dataset, strategy, cfg.task, cfg.trainer.seed)
    weights = class_weights(cfg, train_loader.dataset)
    task = build_task(cfg.task, cfg.model.num_classes, cfg.loss, weights).to(strategy.device)
    model = build_model_from_config(cfg.model)
    info = _run_info(cfg, strategy, model, choices)
    info["class_weights"] = weights.tolist() if weights is not None else None
    # Once, before anything trains: on a meta-device copy (no RNG drawn, nothing real run).
    throughput, flops_info = measure_flops(model, (cfg.dataset.channels, cfg.dataset.image_size, cfg.dataset.image_size),
                                           task, strategy.device, cfg.trainer.precision, cfg.trainer.peak_tflops,
                                           strategy.device_count)
    info.update(flops_info)
    batches = min(len(train_loader), cfg.trainer.max_steps_per_epoch or len(train_loader))
    steps_per_epoch = math.ceil(batches / cfg.trainer.grad_accum_steps)
    strategy.prepare(
        model,
        make_optimizer=lambda module: build_optimizer(cfg.optimizer, module, strategy.data_parallel[0],
                                                      include_frozen=cfg.trainer.unfreeze_at_epoch is not None),
        loss_fn=task.loss,
        make_scheduler=lambda opt: build_scheduler(cfg.scheduler, opt, steps_per_epoch, cfg.trainer.epochs),
        logits_fn=task.logits,
        make_ema=(lambda placed: WeightEma(placed, cfg.trainer.ema_decay, cfg.trainer.ema_warmup))
        if cfg.trainer.ema_decay else None,
        eval_loss_fn=task.eval_loss,
    )
    info.update(strategy.split_expectation())  # a pipeline's bubble, the all-reduce's bytes: beside the measured
    config_dict = OmegaConf.to_container(_without_hydra(dcfg), resolve=True)
    callbacks = build_callbacks(cfg, strategy, task, folder, info, config_dict)
    return Trainer(cfg.trainer, strategy, task, train_loader, val_loader, callbacks, stop, throughput)


def class_weights(cfg: TrainConfig, train_set) -> torch.Tensor | None:
    """loss.class_weights as a tensor: counted from the training labels (auto), given, or None."""
    given = cfg.loss.class_weights
    if given == "auto":
        return balanced_weights(class_counts(train_set, cfg.model.num_classes))
    return torch.tensor(given, dtype=torch.float32) if given is not None else None


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for determinism
        torch.backends.cudnn.benchmark = False
    # Always set: an earlier deterministic run in this process must not leak into this one.
    torch.use_deterministic_algorithms(deterministic)


def _run_info(cfg: TrainConfig, strategy: Strategy, model: torch.nn.Module, choices: dict) -> dict[str, Any]:
    """What the epoch table's title and summary.json state about the run."""
    total, trainable = count_parameters(model), count_parameters(model, trainable_only=True)
    device = strategy.device
    return {
        "model": choices.get("model", cfg.model.name),
        "dataset": choices.get("dataset", cfg.dataset.name),
        "task": cfg.task,
        "strategy": cfg.strategy.name,
        "world_size": strategy.world_size,
        # each rank's host, in rank order (a multi-node job: which node ran which rank)
        "hosts": strategy.gather_objects(socket.gethostname()),
        "batch_per_rank": cfg.dataset.batch_size,
        "global_batch": cfg.dataset.batch_size * strategy.data_parallel[0],  # a pipeline's ranks share batches
        "grad_accum_steps": cfg.trainer.grad_accum_steps,
        "input_size": cfg.dataset.image_size,
        "precision": cfg.trainer.precision,
        "parameters": total,
        "trainable_parameters": trainable,
        "frozen_parameters": total - trainable,
        "unfreeze_at_epoch": cfg.trainer.unfreeze_at_epoch,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "trial": _sweep_trial(),  # its number in a sweep (`hpml train -m`): hpml report ranks the trials
    }


def _sweep_trial() -> int | None:
    """The Hydra job number when this run is one trial of a sweep, else None."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return int(HydraConfig.get().job.num)


def _pin_image_size(dcfg: DictConfig, cfg: TrainConfig) -> None:
    """config.yaml records the pixels the run used, not `auto` (cam/export read it)."""
    with open_dict(dcfg):
        dcfg.dataset.image_size = cfg.dataset.image_size


def _without_hydra(dcfg: DictConfig) -> DictConfig:
    return OmegaConf.masked_copy(dcfg, [k for k in dcfg if k != "hydra"]) if "hydra" in dcfg else dcfg


def _write_config(dcfg: DictConfig, folder: RunFolder, overrides: list[str]) -> None:
    folder.write_text(folder.config, OmegaConf.to_yaml(_without_hydra(dcfg), resolve=True))
    if not folder.overrides.exists():  # a resumed run keeps the overrides that started it
        folder.write_text(folder.overrides, OmegaConf.to_yaml(OmegaConf.create(list(overrides))))
        record_config_dir(folder)  # the user's config folder, so later commands compose the same
