"""`runs/<id>/`: the one place that names a run folder's files.

```
runs/<timestamp or $HPML_RUN_ID>/
  config.yaml  overrides.yaml  config_dir.txt  model_source.json   what the run was started with
  epochs.csv  ranks.csv  summary.json  validations.csv               what it measured
  checkpoints/  last.pt (last.<k>.pt)  best.pt  ema.pt  each with <name>.sha256, and .hpml.write.lock
  .hpml.lock   tb/  wandb/  traces/  export/<format>/  eval/  cam/   failed.json (a failed sweep trial)
```
Everything else asks a `RunFolder` for a path; the writes (temp file, fsync, rename), the lock
and the checksums behind these names live beside it in this package.
"""
from __future__ import annotations

import contextlib
import datetime
import itertools
import json
from pathlib import Path
from typing import Any, Iterator, Optional

from hpml_bench.errors import HpmlError
from hpml_bench.runfolder import checksums, lock, writes

# Per-rank numbers of each epoch, the columns of ranks.csv; the epoch record holds their max
# over ranks (their sum for samples).
# The step split (strategies/split.py), present when trainer.step_split is on: the epoch record
# holds the slowest rank's (most train_s), so that its parts add up to its train_s.
SPLIT_COLUMNS = ("compute_s", "comm_s", "comm_exposed_s", "bubble_s", "overhead_s", "comm_bytes", "comm_gbps")
RANK_COLUMNS = ("data_s", "train_s", "run_s", "samples", "mem_peak_gib", *SPLIT_COLUMNS)
# The checkpoints a finished run offers to export / eval / cam / predict (ema: trainer.ema_decay's average).
CHECKPOINTS = ("best", "last", "ema")
TIME_FORMAT = "%Y-%m-%d_%H-%M-%S"  # a run folder's default name (train/config.py's run_dir spells it too)


def _now() -> datetime.datetime:
    return datetime.datetime.now()


class RunFolder:
    """A run folder: its files by name, its atomic writes, its lock and its checks."""

    CONFIG = "config.yaml"  # the resolved config
    OVERRIDES = "overrides.yaml"  # what the user typed (resume re-applies it)
    EPOCHS = "epochs.csv"
    RANKS = "ranks.csv"
    SUMMARY = "summary.json"
    FAILED = "failed.json"  # a sweep trial that failed: its error line (the sweep went on)
    SWEEP = "multirun.yaml"  # Hydra's record of a sweep, in the folder above its trials
    VALIDATIONS = "validations.csv"  # every validation: epochs trained, elapsed_s, scores (time to target)
    CONFIG_DIR = "config_dir.txt"  # the user's config folder it was composed from
    MODEL_SOURCE = "model_source.json"  # where an outside model's code came from
    LOCK = lock.LOCK  # the live run's lock (runfolder/lock.py)

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def new(cls, root: str | Path = "runs") -> RunFolder:
        """A folder of its own for a run started without a name: <root>/<time>, or <time>-2,
        -3, ... when that name is taken (runs started in one second: a shell loop, an array job,
        or a name a live run holds). Made here, with mkdir, which only one process can win."""
        stamp = _now().strftime(TIME_FORMAT)
        try:
            made_root = not Path(root).exists()
            Path(root).mkdir(parents=True, exist_ok=True)
            for n in itertools.count(1):
                path = Path(root) / (stamp if n == 1 else f"{stamp}-{n}")
                with contextlib.suppress(FileExistsError):
                    path.mkdir()
                    folder = cls(path)
                    folder.made_root = made_root  # a refused start takes back the `runs` it made too
                    return folder
        except OSError as exc:  # a read-only or full disk; `runs` a file
            if exc.errno in writes.WRITE_ERRNOS:
                raise writes.write_error(root, exc) from None
            raise HpmlError(f"cannot make a run folder in {root}: {exc.strerror}; set run_dir= to another folder") from None

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __eq__(self, other) -> bool:
        return isinstance(other, RunFolder) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # -- the files ----------------------------------------------------------------------
    config = property(lambda self: self.path / self.CONFIG)
    overrides = property(lambda self: self.path / self.OVERRIDES)
    epochs = property(lambda self: self.path / self.EPOCHS)
    ranks = property(lambda self: self.path / self.RANKS)
    summary = property(lambda self: self.path / self.SUMMARY)
    validations = property(lambda self: self.path / self.VALIDATIONS)
    failed = property(lambda self: self.path / self.FAILED)
    config_dir = property(lambda self: self.path / self.CONFIG_DIR)
    model_source = property(lambda self: self.path / self.MODEL_SOURCE)
    lock_file = property(lambda self: self.path / self.LOCK)
    checkpoints = property(lambda self: self.path / "checkpoints")
    tb = property(lambda self: self.path / "tb")
    wandb = property(lambda self: self.path / "wandb")
    wandb_id = property(lambda self: self.path / "wandb" / "hpml_run_id")  # resume= continues this W&B run
    traces = property(lambda self: self.path / "traces")
    eval_dir = property(lambda self: self.path / "eval")
    cam_dir = property(lambda self: self.path / "cam")

    @property
    def last(self) -> Path:
        return self.checkpoint("last")

    def checkpoint(self, name: str) -> Path:
        """checkpoints/<name>.pt (last, best, ema)."""
        return self.checkpoints / f"{name}.pt"

    def export_dir(self, fmt: str, checkpoint: str = "best") -> Path:
        """export/<format>, or export/<format>-<checkpoint> for another checkpoint than best."""
        return self.path / "export" / (fmt if checkpoint == "best" else f"{fmt}-{checkpoint}")

    # -- state ------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.summary.is_file()

    @property
    def resumable(self) -> bool:
        return self.last.is_file()

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.summary.read_text())

    def trained_checkpoint(self, name: str) -> Path:
        """checkpoints/<best|last|ema>.pt of a run, or an HpmlError naming the one to use instead."""
        if name not in CHECKPOINTS:
            raise HpmlError(f"checkpoint={name}: use {', '.join(CHECKPOINTS[:-1])} or {CHECKPOINTS[-1]}")
        path = self.checkpoint(name)
        if not path.is_file():
            others = [c for c in CHECKPOINTS if self.checkpoint(c).is_file()]
            hint = f"use checkpoint={others[0]}" if others else \
                "it saved none (trainer.checkpoint_every=0?); train it with checkpoints"
            if name == "ema" and others:  # only a run trained with the average has one
                hint = f"the run trained without trainer.ema_decay; {hint}"
            raise HpmlError(f"run={self.path}: no checkpoint {path.name} in checkpoints/; {hint}")
        return path

    def check_start(self, resume: Optional[str]) -> Optional[Path]:
        """Refuse to overwrite a run; for resume=, return the checkpoint to continue from."""
        if resume:
            checkpoint = RunFolder(resume).last
            if not checkpoint.is_file():
                raise HpmlError(f"resume={resume}: no checkpoint at {checkpoint}; give the run folder of an earlier "
                                f"hpml train")
            return checkpoint
        if self.finished:
            raise HpmlError(f"run folder {self.path} already holds a finished run; pick another run_dir (or "
                            f"HPML_RUN_ID), or resume={self.path} trainer.epochs=<more> to train on")
        if self.resumable:
            raise HpmlError(f"run folder {self.path} holds an unfinished run; continue it with resume={self.path}")
        return None

    def check_seen_by(self, rank: int, hosts: list[tuple[str, str]]) -> None:
        """A multi-node rule: every rank writes into the run folder rank 0 made, so a rank on
        another host than rank 0's must see it there (shared storage). Ranks on rank 0's host
        see what rank 0 made by construction; the rule does not apply to them."""
        if hosts[rank][0] == hosts[0][0] or self.path.is_dir():
            return
        raise HpmlError(f"multi-node job: rank {rank} on {hosts[rank][0]} cannot see the run folder {self.path} "
                        f"that rank 0 made on {hosts[0][0]}; the run folder must be on storage every node sees "
                        f"(start the job from a shared file system, e.g. /scratch, or set run_dir there)")

    # -- writes, the lock, checkpoints (the modules beside this one) ---------------------
    def write_text(self, path: Path, text: str) -> None:
        """Atomically (temp file, fsync, rename)."""

        writes.atomic_write_text(path, text)

    def write_json(self, path: Path, data: Any) -> None:

        writes.atomic_write_json(path, data)

    def check_writable(self, create: bool = True) -> None:

        writes.check_writable(self.path, create)

    def take_lock(self) -> lock.RunLock:
        """The run lock, taken (`RunLock.release()` gives it back); one line when a live run holds it."""

        return lock.RunLock(self.path).acquire()

    def check_not_held(self) -> None:

        lock.check_not_held(self.path)

    def reading_checkpoint(self) -> contextlib.AbstractContextManager:
        """export / cam / predict / eval: refused (one line) while a live run writes a checkpoint."""

        return lock.reading_checkpoint(self.checkpoints)

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        """A checkpoint checked against its sha256 side file (a damaged last.pt falls back to an older one)."""

        return checksums.load_checkpoint_file(path)

    def remove_if_empty(self) -> None:
        """A failed start leaves no empty folder behind (Hydra or a launcher made it)."""
        with contextlib.suppress(OSError):
            if self.path.is_dir() and not any(self.path.iterdir()):
                self.path.rmdir()
                if getattr(self, "made_root", False):
                    self.path.parent.rmdir()  # only when empty: another run may have started there

    @property
    def is_sweep(self) -> bool:
        """A sweep's folder (`hpml train -m`): its trials are run folders below it."""
        return (self.path / self.SWEEP).is_file()

    def failed_below(self) -> Iterator["RunFolder"]:
        """The sweep trials at or below this path that failed (failed.json, no summary)."""
        for path in sorted(f.parent for f in self.path.rglob(self.FAILED)):
            if not RunFolder(path).finished:
                yield RunFolder(path)

    def runs_below(self) -> Iterator["RunFolder"]:
        """The finished run folders at or below this path (a multirun or bench folder)."""
        if self.finished:
            yield self
            return
        for path in sorted(summary.parent for summary in self.path.rglob(self.SUMMARY)):
            yield RunFolder(path)
