"""The `trainer.*` keys: how the loop runs (epochs, precision, timing, checkpoints, faults, the
step split, the EMA), beside the target / early-stop / monitor keys it builds on (targets.py).
Kept apart from trainer.py so the loop stays one screen of code per concern."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from hpml_bench.errors import HpmlError
from hpml_bench.strategies.step import compile_mode
from hpml_bench.train.targets import GoalsConfig, check_goals


@dataclass
class TrainerConfig(GoalsConfig):  # the target, early-stop and monitor keys: train/targets.py
    epochs: int = 4  # training epochs
    # Leading epochs marked warm-up and left out of summary means and speedups.
    warmup_epochs: int = 1
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16: CUDA only, with GradScaler)
    channels_last: bool = False  # NHWC memory format for model and batches (faster convs on GPUs)
    # torch.compile after the strategy wraps the model: off | default | reduce-overhead (CUDA
    # graphs: launch-bound small steps) | max-autotune; true/false are aliases of default/off.
    compile: str = "off"
    grad_accum_steps: int = 1  # batches whose gradients add up before one optimizer step
    grad_clip_norm: Optional[float] = None  # clip the gradients' total norm to this; null: no clipping
    seed: int = 0  # seeds Python, NumPy and torch (and the samplers)
    deterministic: bool = False  # deterministic algorithms only (slower; some ops refuse)
    # exact: synchronize the device at the end of every step (host clock counts GPU work);
    # events: CUDA events around each step, one synchronize per epoch (less perturbation).
    timing: str = "exact"
    # GPU runs: seconds between NVML samples of each GPU's clocks, power, temperature and
    # throttle reasons while it trains (a background thread; each epoch's end adds one sample);
    # 0: only that one; null: no NVML at all. CPU runs never sample.
    gpu_sample_s: Optional[float] = 0.5
    progress: str = "auto"  # auto (only on a TTY) | always | never
    checkpoint_every: int = 1  # epochs; 0 = no checkpoints
    # Cap on optimizer-visible batches per epoch, for quick benchmarks; null = whole epoch.
    max_steps_per_epoch: Optional[int] = None
    # Preemption: this signal checkpoints mid-epoch and requeues a SLURM job (SIGTERM and
    # Ctrl-C checkpoint without requeueing). Several ranks agree on stopping every N steps
    # (one 1-float all-reduce, ~0.5 ms over gloo here); one process checks a flag every step.
    requeue_signal: str = "USR1"
    stop_check_every: int = 10  # steps between the ranks' stop-request agreement (see requeue_signal)
    # With model.freeze_backbone: the (1-based) epoch from which the backbone trains too.
    unfreeze_at_epoch: Optional[int] = None
    # Peak dense TFLOP/s of one device for MFU; null = hpml's table of GPUs (none on CPU).
    peak_tflops: Optional[float] = None
    # A NaN/inf loss or gradient: stop (exit 3, the last finite checkpoint kept) | skip (drop
    # that optimizer step, as GradScaler does; one host sync per optimizer step).
    on_nonfinite: str = "stop"
    # on_nonfinite=skip: stop after this many dropped optimizer steps in a row.
    max_nonfinite_steps: int = 10
    # A checkpoint that cannot be written (disk full, quota, read-only): stop (exit 4, with the
    # resume command) | warn (train on; the next checkpoint is tried again).
    on_write_error: str = "stop"
    # last.pt plus K-1 older ones (last.1.pt, ...): a damaged last.pt falls back to the newest intact one.
    keep_checkpoints: int = 1
    # On GPU out-of-memory: halve the micro-batch and accumulate (same global batch), printed once.
    auto_microbatch: bool = False
    # Split train_s into compute, communication (all / exposed), pipeline bubble and overhead,
    # per epoch and rank (docs/runs.md; about 50 us per step; false: leave the columns out).
    step_split: bool = True
    # A rank (or host) whose compute_s exceeds the median of the others by this fraction is named
    # a straggler (one line, ranks.csv `straggler`); ignored below 2 % of the epoch's train_s.
    straggler_threshold: float = 0.25
    # Keep an exponential moving average of the weights with this decay (e.g. 0.999), validated as
    # val_ema_<metric> and saved as checkpoints/ema.pt; null = none. Strategies single, dp, ddp.
    ema_decay: Optional[float] = None
    ema_warmup: bool = True  # the EMA's decay grows as 1 - (1 + step)^-3/4 up to ema_decay (timm's warm-up)
    # auto_microbatch on several ranks: in the first N batches of each epoch (and after a halving)
    # every rank learns of an out-of-memory on any rank and all halve (a 2-number all-reduce per
    # micro-batch; DDP syncs gradients after the backward); later, one is an error (exit 2).
    auto_microbatch_agree_steps: int = 3

    def __post_init__(self):
        for knob in ("epochs", "grad_accum_steps"):
            if getattr(self, knob) <= 0:
                raise HpmlError(f"trainer.{knob}={getattr(self, knob)} must be positive")
        if self.warmup_epochs < 0:
            raise HpmlError(f"trainer.warmup_epochs={self.warmup_epochs} must be 0 or more")
        if self.timing not in ("exact", "events"):
            raise HpmlError(f"trainer.timing={self.timing}: use exact or events")
        if self.gpu_sample_s is not None and self.gpu_sample_s < 0:
            raise HpmlError(f"trainer.gpu_sample_s={self.gpu_sample_s}: use seconds >= 0, or null for no NVML sampling")
        self.compile = compile_mode(self.compile)
        if self.peak_tflops is not None and self.peak_tflops <= 0:
            raise HpmlError(f"trainer.peak_tflops={self.peak_tflops} must be positive (TFLOP/s of one device)")
        if self.progress not in ("auto", "always", "never"):
            raise HpmlError(f"trainer.progress={self.progress}: use auto, always or never")
        if self.on_nonfinite not in ("stop", "skip"):
            raise HpmlError(f"trainer.on_nonfinite={self.on_nonfinite}: use stop or skip")
        if self.on_write_error not in ("stop", "warn"):
            raise HpmlError(f"trainer.on_write_error={self.on_write_error}: use stop or warn")
        if self.keep_checkpoints <= 0:
            raise HpmlError(f"trainer.keep_checkpoints={self.keep_checkpoints} must be 1 or more")
        if self.straggler_threshold <= 0:
            raise HpmlError(f"trainer.straggler_threshold={self.straggler_threshold} must be positive (0.25 = 25 % slower)")
        if self.auto_microbatch_agree_steps < 0:
            raise HpmlError(f"trainer.auto_microbatch_agree_steps={self.auto_microbatch_agree_steps} must be 0 or more")
        if self.max_nonfinite_steps <= 0:
            raise HpmlError(f"trainer.max_nonfinite_steps={self.max_nonfinite_steps} must be positive")
        check_goals(self)
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise HpmlError(f"trainer.ema_decay={self.ema_decay}: give a decay in (0, 1), e.g. 0.999, or null")
