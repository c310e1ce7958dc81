"""`hpml report` over a sweep (`hpml train -m`, e.g. `hydra/sweeper=optuna`): the trials ranked by
the objective each returned to the sweeper, and the trials that failed (a bad score) listed."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from hpml_bench.runfolder import RunFolder


def rank_trials(table: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, list[str], str]:
    """When every row is a sweep trial with one objective: best first, with `rank` and `objective`
    columns, and a line saying what ranks them. Otherwise the table as it was and ''."""
    if not len(table) or "trial" not in table or table["trial"].isna().any():
        return table, columns, ""
    names, directions = set(table["objective_name"].dropna()), set(table["objective_direction"].dropna())
    if len(names) != 1 or len(directions) != 1:
        return table, columns, ""
    (name,), (direction,) = names, directions
    # A trial without a value (never reached its target) goes last either way.
    ranked = table.sort_values("objective", ascending=direction == "minimize", na_position="last").reset_index(drop=True)
    ranked.insert(0, "rank", range(1, len(ranked) + 1))
    note = (f"Trials ranked by their objective, {name} ({direction}): the value each trial returned to the "
            f"sweeper; – = none (a target never reached), the worst score.\n")
    return ranked, ["rank", *columns, "objective"], note


def failed_trials_lines(paths: list[Path]) -> list[str]:
    """report.md's list of the trials that failed (their failed.json), empty when none did."""
    failed = [f for path in paths for f in RunFolder(path).failed_below()]
    if not failed:
        return []
    lines = ["## Failed trials (each scored the worst value; the sweep went on)", ""]
    for folder in failed:
        record = json.loads(folder.failed.read_text())
        lines.append(f"- {folder}: exit {record.get('exit_code')}: {record.get('error')} "
                     f"(`{' '.join(record.get('overrides', []))}`)")
    return [*lines, ""]
