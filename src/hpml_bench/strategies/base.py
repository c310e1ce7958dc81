"""The Strategy interface: where the model runs and how one training step is executed.

The trainer never touches devices, wrappers or process groups; it asks the strategy.
Only modules in this package import torch.distributed.
"""
from __future__ import annotations

import contextlib
import resource
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from hpml_bench.data.device_loader import DeviceLoader
from hpml_bench.errors import HpmlError
from hpml_bench.registry import Registry
from hpml_bench.runfolder.checksums import atomic_torch_save, load_checkpoint_file
from hpml_bench.runfolder.lock import writing_checkpoint
from hpml_bench.strategies.agreement import OomAgreement
from hpml_bench.strategies.optim_state import by_name, is_by_name, load_by_name, numbered_state_refused
from hpml_bench.strategies.sampler import BalancedSampler, ResumableSampler
from hpml_bench.strategies.split import SplitClock
from hpml_bench.strategies.step import StepLoop, StepSettings, compile_mode

STRATEGIES: Registry = Registry("strategy")
_AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_NO_RANGE = contextlib.nullcontext()  # reentrant: one instance serves every step


def no_range(name: str):
    """The step's named ranges when nothing records them: no cost in the loop."""
    return _NO_RANGE


@dataclass
class StrategyConfig:
    name: str = "single"  # the registered strategy (set by the strategy=<choice> file)
    backend: str = "auto"  # auto | gloo | nccl (distributed strategies)


class Strategy(StepLoop):
    """Single-process base; distributed strategies override setup/prepare/reduce/barrier."""

    world_size = 1
    rank = 0
    local_rank = 0
    # How data-loader workers start (None: the platform's default, fork on Linux).
    worker_start_method: Optional[str] = None

    def __init__(self, cfg: StrategyConfig, step: StepSettings):
        self.cfg = cfg
        self.step = step
        self.device = torch.device("cpu")
        self.model: Optional[nn.Module] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.scheduler = None
        self.loss_fn: Optional[Callable] = None
        self.logits_fn: Callable = lambda out: out
        # Named ranges of a step (forward, backward, optimizer step, communication): the
        # profiler's record_function when a trace is recorded, else a no-op, so the loop has no `if`.
        self.range: Callable[[str], Any] = torch.profiler.record_function if step.named_ranges else no_range
        # Where each training step's time went; on the run's device once setup() chose it.
        self.split = SplitClock(enabled=step.split)
        self.agreement = OomAgreement(self, step.agree_steps)  # ranks agree on an out-of-memory

    # -- life cycle -------------------------------------------------------------------
    # trainer.ema_decay: the strategy keeps a whole copy of the model and validates it.
    supports_ema = True

    @classmethod
    def preflight(cls, cfg, world_size: int) -> None:
        """Refuse impossible combinations (HpmlError) before any process starts.

        `cfg` is the whole TrainConfig; world_size is how many processes will run."""
        if cfg.trainer.precision == "fp16" and not torch.cuda.is_available():
            raise HpmlError("trainer.precision=fp16 needs a CUDA GPU (GradScaler); use bf16 or fp32 on CPU")
        if cfg.trainer.ema_decay and not cls.supports_ema:
            raise HpmlError(f"trainer.ema_decay works with strategy=single, dp or ddp, not {cfg.strategy.name} "
                            f"(each rank holds only part of the model); drop trainer.ema_decay")

    def setup(self) -> None:
        """Choose the device (and, for distributed strategies, join the process group)."""
        self.device = self.resolve_device(self.step.device, self.local_rank)
        self._check_precision()
        self.split = SplitClock(self.device, self.step.split, self.rank)

    def teardown(self) -> None:
        """Release what setup took."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def resolve_device(request: str, local_rank: int = 0) -> torch.device:
        if request not in ("auto", "cpu", "cuda"):
            raise HpmlError(f"device={request}: use auto, cpu or cuda")
        if request == "cuda" and not torch.cuda.is_available():
            raise HpmlError("device=cuda but no CUDA GPU is visible; use device=cpu or device=auto")
        if request == "cpu" or not torch.cuda.is_available():
            return torch.device("cpu")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)

    def _check_precision(self) -> None:
        if self.step.precision not in _AUTOCAST_DTYPES:
            raise HpmlError(f"trainer.precision={self.step.precision}: use one of fp32, bf16, fp16")
        if self.step.precision == "fp16" and self.device.type != "cuda":
            raise HpmlError("trainer.precision=fp16 needs a CUDA GPU (GradScaler); use bf16 or fp32 on CPU (device=cpu)")

    # -- data -------------------------------------------------------------------------
    @property
    def data_parallel(self) -> tuple[int, int]:
        """(replicas, this rank's replica) that split the data; a pipeline has one replica."""
        return self.world_size, self.rank

    # Strategies that split batches into micro-batches need every batch full.
    needs_full_batches = False

    def sampler(self, dataset: Dataset, shuffle: bool, seed: int,
                balance_labels: Optional[torch.Tensor] = None) -> DistributedSampler:
        """This rank's shard, reshuffled each epoch by set_epoch (also at world size 1,
        so a resumed run sees the same order as an uninterrupted one); with `balance_labels`
        (dataset.sampler=balanced) drawn so that every class comes equally often."""

        replicas, index = self.data_parallel
        if balance_labels is not None:
            return BalancedSampler(dataset, balance_labels, num_replicas=replicas, rank=index, seed=seed)
        return ResumableSampler(dataset, num_replicas=replicas, rank=index, shuffle=shuffle, seed=seed)

    def device_loader(self, loader):
        """The loader as the trainer iterates it: batches on this strategy's device, with the
        data set's `batch_transform` (uint8 -> float, augmentation) run there, prefetched on a GPU
        (and on CPU for a data set read in process, the cache)."""

        return DeviceLoader(loader, self.device, getattr(loader.dataset, "batch_transform", None))

    def to_device(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = batch
        non_blocking = self.device.type == "cuda"
        inputs = inputs.to(self.device, non_blocking=non_blocking)
        if self.step.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs, targets.to(self.device, non_blocking=non_blocking)

    # -- model ------------------------------------------------------------------------
    def prepare(self, model: nn.Module, make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
                loss_fn: Callable, make_scheduler: Optional[Callable] = None,
                logits_fn: Callable = lambda out: out, make_ema: Optional[Callable] = None,
                eval_loss_fn: Optional[Callable] = None) -> nn.Module:
        """Place and wrap the model, then build the optimizer over the parameters this rank
        trains (a pipeline stage's, FSDP's shards). Returns the module train_step calls.
        `make_ema` (trainer.ema_decay) makes the weights' moving average from the placed model;
        `eval_loss_fn` is validation's loss (default: loss_fn)."""
        model = model.to(self.device)
        if self.step.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.ema = make_ema(model) if make_ema else None  # a copy of the plain model, before any wrapper
        self.model = self.wrap(model)
        self.optimizer = make_optimizer(self.model)
        mode = compile_mode(self.step.compile)
        if mode != "off":  # after wrap: DDP's and FSDP's hooks see the compiled graph (torch docs)
            self.compile_model(mode)
        self.scheduler = make_scheduler(self.optimizer) if make_scheduler else None
        self.loss_fn, self.logits_fn = loss_fn, logits_fn
        self.eval_loss_fn = eval_loss_fn or loss_fn
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.step.precision == "fp16")
        return self.model

    def wrap(self, model: nn.Module) -> nn.Module:
        """Parallel wrapper around the placed model (none for a single device)."""
        return model

    def compile_model(self, mode: str) -> None:
        """torch.compile the wrapped module the step calls (a pipeline compiles its stages)."""
        self.model = torch.compile(self.model, mode=None if mode == "default" else mode)

    @property
    def device_count(self) -> int:
        """Devices the run computes on (MFU's denominator): one per process."""
        return self.world_size

    def split_expectation(self) -> dict[str, Any]:
        """The analytic side of the step split, where there is one (summary.json, the table's
        caption): a pipeline's bubble share, the bytes a gradient all-reduce moves per step."""
        return {}

    @property
    def local_devices(self) -> list[torch.device]:
        """The devices this process computes on (the hardware monitor samples them)."""
        return [self.device]

    def unwrapped(self) -> nn.Module:
        """The user's model under any compile / DDP / DP wrappers."""
        model = self.model
        model = getattr(model, "_orig_mod", model)
        return getattr(model, "module", model)

    def autocast(self):
        dtype = _AUTOCAST_DTYPES[self.step.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    # -- collectives (no-ops on one process) ------------------------------------------
    def reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Reduce over ranks: op is 'sum' or 'max'."""
        return tensor

    def barrier(self) -> None:
        """Wait for every rank."""

    def broadcast_object(self, obj: Any) -> Any:
        """The main rank's `obj`, on every rank."""
        return obj

    def gather_objects(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj`, in rank order, on the main rank (None elsewhere)."""
        return [obj]

    def first_failure(self, text: str) -> str:
        """The first failure report any rank made (`text` when this one is first)."""
        return text

    def synchronize(self) -> None:
        """Wait for this device's queued work, so host clocks count it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def memory_peak_gib(self) -> float:
        """Peak memory since the last reset: the GPU allocator's, or the process's RSS on CPU."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**30
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30

    def reset_memory_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    # -- checkpoints ------------------------------------------------------------------
    def model_state(self) -> dict[str, torch.Tensor]:
        """A full, unwrapped state_dict that a single-device model can load."""
        return self.unwrapped().state_dict()

    def load_model_state(self, state: dict[str, torch.Tensor]) -> None:
        self.unwrapped().load_state_dict(state)

    def optimizer_state(self) -> dict[str, Any]:
        """Keyed by parameter name (strategies/optim_state.py): any strategy can load it."""
        return by_name(self.optimizer, self.unwrapped())

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        if is_by_name(state):
            load_by_name(self.optimizer, self.unwrapped(), state)
        elif "per_rank" in state:  # a pipeline's, from before by-name states
            raise HpmlError(numbered_state_refused(self.cfg.name))
        else:  # numbered: a checkpoint from before by-name states, written by one device, DP or DDP
            self.optimizer.load_state_dict(state)

    def save_checkpoint(self, path: Path, state: dict[str, Any], keep: int = 1) -> None:
        """Written by the main rank to a temp file, then renamed: never a half file; `keep`-1
        older ones are kept as <name>.1.pt, ... (trainer.keep_checkpoints)."""
        if self.is_main:
            with writing_checkpoint(path.parent):  # export / cam / predict do not read meanwhile
                atomic_torch_save(state, path, keep)
        self.barrier()

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        """Checked against its sha256 side file; a damaged last.pt falls back to an older one."""

        return load_checkpoint_file(path)
