"""Stragglers: the rank (or host) whose compute held the others up, per epoch, from the
per-rank step split the trainer gathered (record["ranks"], in RANK_COLUMNS order)."""
from __future__ import annotations

import statistics
from typing import Any, Optional

from hpml_bench.runfolder import RANK_COLUMNS

# Differences below this share of the epoch's train_s are noise, whatever the ratio.
MIN_SHARE_OF_TRAIN = 0.02


def _slower(value: float, others: list[float], threshold: float, train_s: float) -> Optional[float]:
    """value's ratio to the median of `others` when it exceeds it by more than `threshold`
    (and by more than MIN_SHARE_OF_TRAIN of train_s), else None."""
    if not others:
        return None
    median = statistics.median(others)
    if value > (1 + threshold) * median and value - median > MIN_SHARE_OF_TRAIN * train_s:
        return value / median if median > 0 else float("inf")
    return None


def find_stragglers(record: dict[str, Any], hosts: Optional[list[str]], threshold: float) -> dict[int, str]:
    """{rank: one line saying why} for the epoch's stragglers: a rank whose compute_s (train_s
    without the split) exceeds the median of the other ranks by `threshold`, or every rank of a
    host whose median does so against the other hosts'."""
    rows = [dict(zip(RANK_COLUMNS, values)) for values in record.get("ranks", [])]
    if len(rows) < 2:
        return {}
    key = "compute_s" if "compute_s" in rows[0] else "train_s"
    compute = [row[key] for row in rows]
    train_s, epoch, found = max(row["train_s"] for row in rows), record["epoch"], {}
    hosts = hosts if hosts and len(hosts) == len(rows) else None
    for rank, value in enumerate(compute):
        ratio = _slower(value, compute[:rank] + compute[rank + 1:], threshold, train_s)
        if ratio is not None:
            where = f" (host {hosts[rank]})" if hosts else ""
            found[rank] = (f"straggler: rank {rank}{where} computed {value:.3f} s in epoch {epoch}, {ratio:.1f}x "
                           f"the median of the other ranks ({key}; ranks.csv column straggler)")
    for host in sorted(set(hosts or [])):
        mine = [c for c, h in zip(compute, hosts) if h == host]
        medians = [statistics.median([c for c, h in zip(compute, hosts) if h == other]) for other in set(hosts) - {host}]
        ratio = _slower(statistics.median(mine), medians, threshold, train_s)
        if ratio is not None:
            for rank in (r for r, h in enumerate(hosts) if h == host):
                found[rank] = (f"straggler: host {host} (ranks {', '.join(str(r) for r, h in enumerate(hosts) if h == host)}) "
                               f"computed {ratio:.1f}x the median of the other hosts in epoch {epoch} ({key}; "
                               f"ranks.csv column straggler)")
    return found
