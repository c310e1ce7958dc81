"""The `bench` config group: a base training config plus axes, and the matrix of cells it spans.

conf/bench/<name>.yaml holds a `full` form (what a GPU node runs) and a `smoke` form (tiny
models, generated data, CPU); `bench.scale=smoke` picks the second.
"""
from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hpml_bench.config.groups import CONF_DIR, GROUPS, choices, config_error_line
from hpml_bench.config.search_path import find_config
from hpml_bench.config.words import as_config, key_of, value_of
from hpml_bench.errors import HpmlError
from hpml_bench.registry import unknown_choice

SCALES = ("full", "smoke")


@dataclass
class ClusterForm:
    """What a form adds under bench.launcher=slurm: the axes a cluster provides that the seed
    varied (its nodes, the GPUs of a one-process cell); GPUs per node of a ddp/fsdp/pipe cell
    are its strategy.nproc_per_node, which the SLURM launcher turns into tasks and GPUs."""

    base: list[str] = field(default_factory=list)  # train overrides added on a cluster (strategy=ddp: a rank per node)
    axes: dict[str, list[Any]] = field(default_factory=dict)  # axes added (or replaced) on a cluster, e.g. slurm.nodes
    include: Optional[list[dict[str, Any]]] = None  # the extra cells on a cluster instead of the form's; null: the form's


@dataclass
class BenchScale:
    """One form of a bench: every cell runs `hpml train <base> <cell's axis values>`."""

    base: list[str] = field(default_factory=list)  # train overrides shared by every cell
    axes: dict[str, list[Any]] = field(default_factory=dict)  # train key -> values (the product spans cells)
    include: list[dict[str, Any]] = field(default_factory=list)  # extra cells (key -> value)
    exclude: list[dict[str, Any]] = field(default_factory=list)  # drop cells matching every given key
    baseline: dict[str, Any] = field(default_factory=dict)  # the cell speedups are measured against; {} = first
    repeats: int = 1  # runs per cell, alternated ABBA across cells
    # Environment of every cell's process (the smoke forms pin OMP_NUM_THREADS=1 so a 1-process
    # cell and each rank of a 2-process cell get one core of the shared 2-core CI machine).
    env: dict[str, str] = field(default_factory=dict)
    cluster: ClusterForm = field(default_factory=ClusterForm)  # bench.launcher=slurm: the cluster's axes

    def on_cluster(self) -> "BenchScale":
        """This form as a cluster runs it: its cluster base and axes added, its include replaced."""
        extra = self.cluster
        return dataclasses.replace(self, base=[*self.base, *extra.base], axes={**self.axes, **extra.axes},
                                   include=self.include if extra.include is None else extra.include)


@dataclass
class BenchConfig:
    name: str = MISSING  # the bench (set by the bench=<choice> file)
    description: str = ""  # one line: what the bench reproduces
    needs: str = ""  # what the full form needs (GPUs, data), shown by the README and at start
    scale: str = "full"  # full | smoke
    repeats: Optional[int] = None  # overrides the form's repeats
    out_dir: Optional[str] = None  # default runs/bench/<name>[-smoke]
    # local: every cell a process on this machine; slurm: every cell its own SLURM job (slurm=<preset>)
    launcher: str = "local"
    wait: bool = True  # launcher=slurm: wait for the jobs and gather; false: submit, return, gather on a re-run
    poll_s: float = 10.0  # launcher=slurm: seconds between two looks at squeue/sacct while waiting
    full: BenchScale = field(default_factory=BenchScale)
    smoke: BenchScale = field(default_factory=BenchScale)

    def __post_init__(self):
        if self.scale not in SCALES:
            raise HpmlError(f"bench.scale={self.scale}: use full or smoke")
        if self.repeats is not None and self.repeats <= 0:
            raise HpmlError(f"bench.repeats={self.repeats} must be positive")
        if self.poll_s <= 0:
            raise HpmlError(f"bench.poll_s={self.poll_s} must be positive")

    @property
    def form(self) -> BenchScale:
        """The chosen scale's form; under bench.launcher=slurm with its cluster axes."""
        form = getattr(self, self.scale)
        return form.on_cluster() if self.launcher == "slurm" else form

    @property
    def folder(self) -> str:
        return self.out_dir or f"runs/bench/{self.name}{'-smoke' if self.scale == 'smoke' else ''}"


ConfigStore.instance().store(group="bench", name="schema", node=BenchConfig)


def load_bench(args: list[str]) -> tuple[BenchConfig, list[str]]:
    """`bench=<name> bench.x=y ...` compose the bench; every other argument is a train override
    added to each cell."""
    bench_args = [a for a in args if key_of(a).split(".")[0] == "bench"]
    train_args = [a for a in args if a not in bench_args]
    names = choices("bench")
    chosen = value_of(bench_args, "bench")
    if chosen is None:
        raise HpmlError(f"name a bench: hpml bench bench=<name>, one of {', '.join(names)}")
    if chosen.endswith((".yaml", ".yml")):
        return _load_bench_file(Path(chosen), [a for a in bench_args if key_of(a) != "bench"]), train_args
    if chosen not in names:
        raise unknown_choice("bench", chosen, names)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = compose("bench_run", overrides=bench_args)
        bench = OmegaConf.to_object(cfg.bench)
    except (HydraException, OmegaConfBaseException) as exc:
        if isinstance(exc.__cause__, HpmlError):
            raise exc.__cause__ from None
        raise HpmlError(config_error_line(exc).replace("hpml train --cfg job", str(find_config("bench", chosen)))) from exc
    return bench, train_args


def _load_bench_file(path: Path, overrides: list[str]) -> BenchConfig:
    """`bench=my_bench.yaml`: a bench file of one's own, in the conf/bench/ format."""
    if not path.is_file():
        raise HpmlError(f"bench={path}: no such file; give a bench name or a .yaml file in the conf/bench/ format")
    try:
        loaded = OmegaConf.load(path)
        loaded.pop("defaults", None)
        merged = OmegaConf.merge(OmegaConf.structured(BenchConfig), loaded, as_config(overrides, prefix="bench."))
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        if isinstance(exc.__cause__, HpmlError):
            raise exc.__cause__ from None
        raise HpmlError(f"bench file {path}: {config_error_line(exc).split(' (`')[0]}") from exc


def _matches(cell: dict[str, Any], pattern: dict[str, Any]) -> bool:
    return all(key in cell and str(cell[key]) == str(value) for key, value in pattern.items())


def expand_cells(form: BenchScale) -> list[dict[str, Any]]:
    """The product of the axes, minus the excluded cells, plus the included ones (in order)."""
    keys = list(form.axes)
    cells = [dict(zip(keys, values)) for values in itertools.product(*form.axes.values())] if keys else []
    cells = [c for c in cells if not any(_matches(c, pattern) for pattern in form.exclude)]
    for extra in form.include:
        if dict(extra) not in cells:
            cells.append(dict(extra))
    if not cells:
        raise HpmlError("the bench matrix is empty after its excludes; drop an exclude or add axis values")
    return cells


def axis_keys(cells: list[dict[str, Any]]) -> list[str]:
    """Every key a cell sets, in first-seen order (the table's columns)."""
    return list(dict.fromkeys(key for cell in cells for key in cell))


def baseline_index(cells: list[dict[str, Any]], baseline: dict[str, Any]) -> int:
    if not baseline:
        return 0
    for i, cell in enumerate(cells):
        if _matches(cell, baseline) and len(cell) == len(baseline):
            return i
    for i, cell in enumerate(cells):
        if _matches(cell, baseline):
            return i
    raise HpmlError(f"bench baseline {dict(baseline)} matches no cell of the matrix; name one of its cells")


def hydra_value(value: Any) -> str:
    """A Python value as Hydra override syntax."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    return str(value)


def cell_overrides(cell: dict[str, Any]) -> list[str]:
    return [f"{key}={hydra_value(value)}" for key, value in cell.items()]


def cell_id(cell: dict[str, Any]) -> str:
    """A folder name for the cell: key-value pairs, safe for paths and Hydra overrides."""
    text = "__".join(f"{key}-{hydra_value(value)}" for key, value in cell.items()) or "base"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)


def is_slurm_key(key: str) -> bool:
    """slurm.<field>: a SLURM job setting (an axis of a bench.launcher=slurm bench), not a train key."""
    return key.startswith("slurm.")


def is_group_key(key: str) -> bool:
    return key in GROUPS or key == "experiment"

