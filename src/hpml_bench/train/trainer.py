"""The one training loop. It fires callback hooks and asks the strategy for everything
device- or process-related; it knows nothing of torch.distributed."""
from __future__ import annotations

import random
import warnings
from typing import Any, Optional

import torch
from torch.utils.data import DataLoader

from hpml_bench.callbacks.base import Callback
from hpml_bench.faults.lost_worker import watch_workers
from hpml_bench.faults.nonfinite import FiniteWatch
from hpml_bench.faults.preemption import NoStop
from hpml_bench.runfolder import RANK_COLUMNS, SPLIT_COLUMNS
from hpml_bench.strategies import Strategy
from hpml_bench.tasks import Task
from hpml_bench.train.flops import Throughput
from hpml_bench.train.targets import Goals
from hpml_bench.train.trainer_config import TrainerConfig


class Trainer:
    """Runs epochs of training and validation, filling one record per epoch."""

    def __init__(self, cfg: TrainerConfig, strategy: Strategy, task: Task,
                 train_loader: DataLoader, val_loader: DataLoader, callbacks: list[Callback], stop=None,
                 throughput: Optional[Throughput] = None):
        self.cfg, self.strategy, self.task = cfg, strategy, task
        self.train_loader, self.val_loader = train_loader, val_loader
        self.callbacks = callbacks
        self.train_metrics = task.metrics().to(strategy.device)
        self.val_metrics = task.metrics().to(strategy.device)
        self.val_ema_metrics = task.metrics().to(strategy.device)  # trainer.ema_decay's weights
        self.start_epoch = 0
        self.stop = stop or NoStop()  # asked at step boundaries (preempt.StopRequest)
        self.throughput = throughput or Throughput()  # FLOPs per sample -> tflops, mfu
        self.start_step = 0  # batches of start_epoch already trained (a mid-epoch resume)
        self.stopped_at: Optional[tuple[int, int]] = None  # (epoch, batches done) of a stop
        self._resume_rng = None
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.finite = FiniteWatch(cfg.on_nonfinite, cfg.max_nonfinite_steps, strategy, saved=lambda: bool(self.history))
        self.position = (0, 0)
        self.goals = Goals(cfg, task.monitor)  # target, early stop, monitor (train/targets.py)

    @property
    def steps_per_epoch(self) -> int:
        steps = len(self.train_loader) + self.train_loader.sampler.start_index // self.train_loader.batch_size
        return min(steps, self.cfg.max_steps_per_epoch) if self.cfg.max_steps_per_epoch else steps

    def fit(self) -> list[dict[str, Any]]:
        """Train from start_epoch to cfg.epochs; returns the per-epoch records."""
        self._fire("on_fit_start")
        for epoch in range(self.start_epoch, self.cfg.epochs):
            self.epoch = epoch
            record = {"epoch": epoch + 1, "warmup": epoch < self.cfg.warmup_epochs}
            record.update(self.train_epoch(epoch))
            if self.stopped_at:
                return self.history
            record.update(self._epoch_validation())
            done = self.goals.see_epoch(record)  # time to target, early stop
            self.history.append(record)
            self._fire("on_epoch_end", record)
            if done:
                break
            if epoch + 1 < self.cfg.epochs and self.stop.should_stop(self.strategy, None):
                self.stopped_at = (epoch + 1, 0)
                return self.history
        self._fire("on_fit_end")
        return self.history

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        self.strategy.train(True)
        self.train_loader.sampler.set_epoch(epoch)
        first = self.start_step if epoch == self.start_epoch else 0
        self.train_loader.sampler.start_index = first * self.train_loader.batch_size
        self.train_metrics.reset()
        self.strategy.reset_memory_peak()
        record: dict[str, Any] = {"lr": self._lr()}
        loss_sum = torch.zeros((), device=self.strategy.device)
        samples = 0
        self._fire("on_train_epoch_start")
        self.goals.start_epoch()
        self._mid_val: list[dict[str, Any]] = []  # this epoch's mid-epoch validations (val_every_steps)
        steps = self.steps_per_epoch
        accum = self.cfg.grad_accum_steps
        self.finite.start_epoch(steps, first, self.strategy.device)
        self.position = (epoch, first)  # (epoch, batches done) at the last optimizer step
        self._fire("on_fetch_start")
        for i, batch in enumerate(self._batches(), start=first):
            self._fire("on_fetch_end")
            last = i + 1 == steps
            out = self.strategy.train_step(batch, step_optimizer=(i + 1) % accum == 0 or last, loss_scale=1 / accum)
            self.finite.see(i, out.loss)  # a reference; read at the checks below
            if (i + 1) % accum == 0 or last:  # `last` steps the optimizer too
                self.position = (epoch, i + 1)
            self.finite.check_dropped(epoch, i)
            if out.n:  # a pipeline's earlier stages see no outputs
                self.train_metrics.update(out.logits, out.targets)
            loss_sum += out.loss * out.n if self.cfg.on_nonfinite == "stop" else torch.nan_to_num(out.loss * out.n, 0, 0, 0)
            samples += out.n
            self._fire("on_step_end", out)
            if last or self._mid_epoch_validation(epoch, i, steps):
                break
            if (i + 1) % self.cfg.stop_check_every == 0:
                self.finite.check(epoch, i)
            if (i + 1) % accum == 0 and self.stop.should_stop(self.strategy, i):
                self.finite.check(epoch, i)  # never a checkpoint past an unread flag
                self.stopped_at = (epoch, i + 1)
                return record
            self._fire("on_fetch_start")
        self.finite.check(epoch, steps - 1)
        self.finite.check_weights(epoch)
        self.finite.report_dropped(epoch)
        self._fire("on_train_epoch_end", record)  # the timer fills data_s / train_s / run_s
        record.update(self._reduced_scores("train", loss_sum, samples, self.train_metrics))
        return self._reduce_over_ranks(record, samples)

    def _batches(self):
        """The epoch's batch iterator; a mid-epoch resume restores the RNG only now, since
        creating the iterator draws the loader's base seed (the interrupted run drew it earlier)."""
        batches = iter(self.train_loader)
        if self._resume_rng is not None:
            _set_rng(self._resume_rng)
            self._resume_rng = None
        return watch_workers(batches, self.train_loader)

    def _reduce_over_ranks(self, record: dict[str, Any], samples: int) -> dict[str, Any]:
        """Times and memory: the slowest rank's; samples: every rank's, summed; the step split:
        the rank with the most train_s (its parts add up to the train_s reported)."""
        record["mem_peak_gib"] = self.strategy.memory_peak_gib()
        record["samples"] = samples
        columns = [key for key in RANK_COLUMNS if key in record]  # the split's only when measured
        ranks = self._per_rank(record, columns)
        record["ranks"] = ranks.tolist()
        slowest = int(ranks[:, columns.index("train_s")].argmax())
        for i, key in enumerate(columns):
            value = ranks[:, i].sum() if key == "samples" else ranks[slowest, i] if key in SPLIT_COLUMNS else ranks[:, i].max()
            record[key] = None if value.isnan() else value.item()  # comm_gbps: None without communication
        record["samples"] = int(record["samples"])
        record["samples_per_s"] = record["samples"] / record["run_s"] if record["run_s"] > 0 else 0.0
        record.update(self.throughput.rates(record["samples"], record["run_s"]))
        return record

    def _per_rank(self, record: dict[str, Any], columns: list[str]) -> torch.Tensor:
        """[world, len(columns)]: each rank's own numbers, on every rank (None as NaN)."""
        world, rank = self.strategy.world_size, self.strategy.rank
        rows = torch.zeros(world, len(columns), dtype=torch.float64)
        rows[rank] = torch.tensor([float("nan") if record[k] is None else float(record[k]) for k in columns], dtype=torch.float64)
        return self.strategy.reduce(rows, "sum")

    def validate(self) -> dict[str, Any]:
        """val_<metric>, and val_ema_<metric> for the weights' moving average (trainer.ema_decay)."""
        self.strategy.train(False)
        record: dict[str, Any] = {}
        self._fire("on_validation_start")
        passes = {"val": self._val_pass(self.val_metrics)}
        if self.strategy.ema is not None:
            passes["val_ema"] = self._val_pass(self.val_ema_metrics, averaged=True)
        self._fire("on_validation_end", record)  # the timer fills val_s (both passes)
        record["val_s"] = self.strategy.reduce(torch.tensor(record["val_s"]), "max").item()
        for prefix, (loss_sum, samples, metrics) in passes.items():
            record.update(self._reduced_scores(prefix, loss_sum, samples, metrics))
        return record

    def _val_pass(self, metrics, averaged: bool = False):
        metrics.reset()
        loss_sum = torch.zeros((), device=self.strategy.device)
        samples = 0
        for batch in watch_workers(iter(self.val_loader), self.val_loader):
            out = self.strategy.eval_step(batch, averaged=True) if averaged else self.strategy.eval_step(batch)
            if out.n:
                metrics.update(out.logits, out.targets)
            loss_sum += out.loss * out.n
            samples += out.n
        return loss_sum, samples, metrics

    def _mid_epoch_validation(self, epoch: int, i: int, steps: int) -> bool:
        """Validate after every cfg.val_every_steps batches of the epoch (its last validates at the
        end anyway); True: a goal was met and the epoch ends here."""
        every = self.cfg.val_every_steps
        if not every or (i + 1) % every:
            return False
        with torch.random.fork_rng(devices=[]):  # the val loader draws a seed: training's RNG stays as without
            scores = self.validate()  # the timer counts it in val_s, not in run_s
        self.strategy.train(True)
        self._mid_val.append(scores)
        elapsed = self.strategy.reduce(torch.tensor(self.goals.elapsed_in_epoch(), dtype=torch.float64), "max").item()
        return self.goals.see(scores, epoch, i + 1, steps, self.goals.clock_s + elapsed)

    def _epoch_validation(self) -> dict[str, Any]:
        """The epoch's scores (those of the mid-epoch validation a goal ended it at, if one did);
        its val_s counts the mid-epoch validations too."""
        scores = dict(self._mid_val.pop()) if self.goals.stop_reason else self.validate()
        scores["val_s"] += sum(v["val_s"] for v in self._mid_val)
        return scores

    def _reduced_scores(self, prefix: str, loss_sum: torch.Tensor, samples: int, metrics) -> dict[str, float]:
        totals = self.strategy.reduce(torch.stack([loss_sum.float().cpu(), torch.tensor(float(samples))]), "sum")
        scores = {f"{prefix}_loss": (totals[0] / totals[1].clamp(min=1)).item()}
        with warnings.catch_warnings():  # a pipeline's first stages never update: expected
            warnings.filterwarnings("ignore", message=".*was called before the ``update`` method.*")
            computed = metrics.compute()  # torchmetrics sums the ranks' states
        scores.update({f"{prefix}_{k}": v.item() for k, v in computed.items()})
        return scores

    def _lr(self) -> float:
        return self.strategy.optimizer.param_groups[0]["lr"]

    def _fire(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def stop_at_last_step(self) -> Optional[tuple[int, int]]:
        """After a fault mid-epoch (a lost loader worker): stop at the last finished optimizer
        step so that state_dict() continues from there; None when there is nothing to save."""
        epoch, done = self.position
        # done == steps: the epoch's training ended and its validation did not; the epoch's own
        # checkpoint (trainer.checkpoint_every) is where a resume starts, not a mid-epoch one.
        if done == 0 or done >= self.steps_per_epoch or self.stopped_at:
            return None
        self.finite.check(epoch, done - 1)  # never a checkpoint past an unread flag
        self.stopped_at = (epoch, done)
        return self.stopped_at

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly."""
        s = self.strategy
        return {
            # (epoch to start, batches of it done): (next epoch, 0) unless stopped mid-epoch
            "epoch": (self.stopped_at or (self.epoch + 1, 0))[0],
            "step": (self.stopped_at or (self.epoch + 1, 0))[1],
            "model": s.model_state(),
            "optimizer": s.optimizer_state(),
            "scheduler": s.scheduler.state_dict() if s.scheduler is not None else None,
            "scaler": s.scaler.state_dict(),
            "ema": s.ema.state_dict() if s.ema is not None else None,  # trainer.ema_decay's average
            "history": self.history,
            "goals": self.goals.state_dict(mid_epoch=self.stopped_at is not None and self.stopped_at[1] > 0),
            "layout": self.layout(),  # a resume under another strategy converts from it (train/resume.py)
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        }

    def layout(self) -> dict[str, Any]:
        """How the run splits its data over ranks and steps."""
        s = self.strategy
        return {"strategy": s.cfg.name, "world_size": s.world_size, "replicas": s.data_parallel[0],
                "batch_size": self.train_loader.batch_size, "batches_per_epoch": self.steps_per_epoch,
                "grad_accum_steps": self.cfg.grad_accum_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        s = self.strategy
        s.load_model_state(state["model"])
        s.load_optimizer_state(state["optimizer"])
        if s.scheduler is not None and state["scheduler"] is not None:
            s.scheduler.load_state_dict(state["scheduler"])
        s.scaler.load_state_dict(state["scaler"])
        if s.ema is not None and state.get("ema") is not None:  # else the average starts from these weights
            s.ema.load_state_dict(state["ema"])
        self.history = list(state["history"])
        self.goals.load_state_dict(state.get("goals"), self.history)
        self.start_epoch, self.start_step = state["epoch"], state.get("step", 0)
        if self.start_step:
            self._resume_rng = state["rng"]  # set when the resumed epoch's loader has started
        else:
            _set_rng(state["rng"])


def _set_rng(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
