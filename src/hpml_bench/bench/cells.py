"""A bench's cells: one point of the matrix (its axis values and train overrides), the order
its repeats run in, and the row each repeat adds to bench.csv; shared by both launchers."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpml_bench.bench.config import cell_id, hydra_value
from hpml_bench.bench.results import run_row


@dataclass
class Cell:
    values: dict[str, Any]
    overrides: list[str]
    status: str = "ready"  # ready | skipped | failed
    reason: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return cell_id(self.values)


def abba_order(cells: list[Cell], repeats: int) -> list[tuple[Cell, int]]:
    """Repeat r runs the cells forward when r is even, backward when odd: A B | B A | A B ..."""
    ready = [c for c in cells if c.status == "ready"]
    return [(cell, r) for r in range(repeats) for cell in (ready if r % 2 == 0 else ready[::-1])]


def cuda_needs(cfg) -> list[str]:
    """The settings of a cell's train config that need CUDA GPUs."""
    needs = {"device=cuda": cfg.device == "cuda", "strategy=dp": cfg.strategy.name == "dp",
             "trainer.precision=fp16": cfg.trainer.precision == "fp16",
             "strategy.backend=nccl": getattr(cfg.strategy, "backend", "auto") == "nccl"}
    return [name for name, needed in needs.items() if needed]


def needs_text(wanted: list[str]) -> str:
    """'device=cuda and strategy=dp need CUDA'."""
    return f"{' and '.join(wanted)} need{'s' if len(wanted) == 1 else ''} CUDA"


def error_line(text: str) -> str:
    """hpml's own one-line error, else the exception line of a traceback, else the last line."""
    lines = [l for l in text.splitlines() if l.strip()]
    error = next((l for l in reversed(lines) if l.startswith("error:")), None) or \
        next((l for l in reversed(lines) if re.match(r"^\w+(Error|Exception)\b", l)), lines[-1] if lines else "")
    return error[:300]


def values_text(values: dict[str, Any]) -> dict[str, str]:
    """Axis values as the command line wrote them (a missing value stays blank, not NaN)."""
    return {key: hydra_value(value) for key, value in values.items()}


def cell_row(cell: Cell, r: int, n: int, status: str, error: str, rep_dir: Path, folder: Path, wall: float) -> dict:
    """One repeat's row of bench.csv (with the run's numbers when it finished)."""
    row = {"cell": cell.id, "repeat": r, "order": n, "status": status, "reason": error, **values_text(cell.values),
           "run_dir": str(rep_dir.relative_to(folder)), "wall_s": round(wall, 2)}
    if status == "done":
        row.update(run_row(rep_dir))
    return row
