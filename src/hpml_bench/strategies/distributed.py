"""What every multi-process strategy shares: joining the process group, collectives."""
from __future__ import annotations

import atexit
import datetime
import os
import sys
from dataclasses import dataclass
from typing import Any, NoReturn, Optional

import torch
import torch.distributed as dist

from hpml_bench.errors import HpmlError
from hpml_bench.strategies.base import Strategy, StrategyConfig
from hpml_bench.strategies.dist_env import read_dist_env
from hpml_bench.strategies.step import StepSettings

_OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}


@dataclass
class DistributedConfig(StrategyConfig):
    timeout_s: float = 600.0  # a collective waiting longer than this fails the run (no hang)
    # >1: `hpml train` starts this many local workers itself (torch's elastic launcher).
    nproc_per_node: int = 1


class DistributedStrategy(Strategy):
    """Joins the default process group from torchrun/SLURM variables, or alone (world size 1)."""

    # Communicator threads (gloo, NCCL) take Python thread states of their own without the
    # GIL; a fork at that instant gives a child that hangs before it runs a line (CPython
    # gh-112275, unfixed before 3.11.10 / 3.12.1): a DDP CI run hung in a loader worker
    # that way. Workers forked from a clean single-threaded server cannot inherit that lock.
    worker_start_method = "forkserver"

    def __init__(self, cfg: DistributedConfig, step: StepSettings):
        super().__init__(cfg, step)
        env = read_dist_env()
        self.env = env
        self.rank, self.local_rank, self.world_size = env.rank, env.local_rank, env.world_size
        self._owns_group = False

    @classmethod
    def preflight(cls, cfg, world_size: int) -> None:
        super().preflight(cfg, world_size)
        if cfg.strategy.nproc_per_node <= 0:
            raise HpmlError(f"strategy.nproc_per_node={cfg.strategy.nproc_per_node} must be positive")
        cuda = torch.cuda.is_available() and cfg.device != "cpu"
        if cfg.strategy.backend == "nccl" and not cuda:
            raise HpmlError("strategy.backend=nccl needs CUDA GPUs; use strategy.backend=gloo (or auto) on CPU")
        if cfg.strategy.backend not in ("auto", "gloo", "nccl"):
            raise HpmlError(f"strategy.backend={cfg.strategy.backend}: use auto, gloo or nccl")
        if cuda and world_size > torch.cuda.device_count() and cfg.strategy.nproc_per_node > 1:
            raise HpmlError(f"strategy.nproc_per_node={world_size} but {torch.cuda.device_count()} GPUs are visible")

    def setup(self) -> None:
        super().setup()
        self.backend = self._backend()
        if dist.is_initialized():
            return
        timeout = datetime.timedelta(seconds=self.cfg.timeout_s)
        if self.env.master_addr is None:  # one process, no launcher: an in-memory store
            dist.init_process_group(self.backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
        elif "TORCHELASTIC_RESTART_COUNT" in os.environ:  # torchrun: its store outlives a restart
            dist.init_process_group(self.backend, store=self._elastic_store(timeout), rank=self.rank,
                                    world_size=self.world_size, timeout=timeout)
        else:
            dist.init_process_group(self.backend, init_method=f"tcp://{self.env.master_addr}:{self.env.master_port}",
                                    rank=self.rank, world_size=self.world_size, timeout=timeout)
        self._owns_group = True
        global _started_a_group
        _started_a_group = True

    def _elastic_store(self, timeout: datetime.timedelta) -> dist.Store:
        """torchrun's agent keeps one TCPStore across `--max-restarts` restarts; the keys of the
        dead round (each rank's address) would be read by the new one before being rewritten
        (gloo: "Connection refused"). A prefix per restart gives every round fresh keys."""
        agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        store = dist.TCPStore(self.env.master_addr, self.env.master_port, self.world_size,
                              is_master=self.rank == 0 and not agent, timeout=timeout)
        if not agent:  # rank 0 hosts a fresh store each round (torchrun of ddp_torchrun.sbatch)
            return store
        # One agent's restart count: on several nodes the agents' counts differ (a node that only
        # saw another's failure restarts with count 0), so multi-node jobs use a fresh store instead.
        return dist.PrefixStore(f"hpml/restart{os.environ['TORCHELASTIC_RESTART_COUNT']}", store)

    def _backend(self) -> str:
        if self.cfg.backend == "auto":
            return "nccl" if self.device.type == "cuda" else "gloo"
        return self.cfg.backend

    def teardown(self) -> None:
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self._owns_group = False

    # When this step's last gradients became ready for their collective (DDP: the last bucket's
    # hook; FSDP: the last reduce-scatter), set by the strategy's timed communication.
    _last_ready: Optional[Any] = None

    def backward_done(self) -> None:
        # The backward returns once its gradient collectives are done (DDP waits for every
        # bucket's future, FSDP for its reduce-scatters): from the last gradients' readiness on,
        # the step only waited for communication, which compute did not hide.
        if self._last_ready is not None:
            self.split.add("exposed", self._last_ready, self.split.mark())
            self._last_ready = None

    def reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        comm_device = self.device if self.backend == "nccl" else torch.device("cpu")
        out = tensor.detach().clone().to(comm_device)
        dist.all_reduce(out, op=_OPS[op])
        return out.to(tensor.device)

    def barrier(self) -> None:
        dist.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def first_failure(self, text: str) -> str:
        """The first report set in the job's store (rank 0 holds it; while it lives, every rank
        reads the same first diagnosis); this rank's `text` when the store is gone too."""
        try:
            store = dist.distributed_c10d._get_default_store()
            return store.compare_set("hpml/first_failure", "", text).decode()
        except Exception:  # noqa: BLE001 - the store's host is the lost one
            return text

    def gather_objects(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj`, in rank order, on the main rank (None elsewhere)."""
        out = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out


# This process created a process group (hpml's own exit then skips Python's finalization).
_started_a_group = False


def started_a_group() -> bool:
    return _started_a_group


def exit_without_finalizing(code: int) -> NoReturn:
    """End a process that ran collectives: exit handlers and output flushed, then os._exit.

    A gloo group outlives destroy_process_group while anything refers to it (torch's DTensor
    caches do, after an FSDP checkpoint), and so do its worker threads. One of them may drop a
    finished collective's tensors only after Python's finalization began; wanting the GIL then,
    the thread is ended and the process aborts ("terminate called without an active exception",
    exit -6, on a run that had finished: pytorch/pytorch#190489). Finalization is all that is
    left out here: the exit handlers (loggers, loader workers) run first, while Python is whole.
    """
    atexit._run_exitfuncs()  # noqa: SLF001 - what Py_Finalize would run first
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say there
            pass
    os._exit(code)
