"""The step split in the epoch table: one compact column and a caption line that sets the
measured numbers beside the analytic ones (a pipeline's bubble, the all-reduce's bytes)."""
from __future__ import annotations

from typing import Any, Optional

SPLIT_HEADER = "c/x/b/o %"  # compute / exposed communication / bubble / overhead, % of train_s


def split_cell(record: dict[str, Any]) -> str:
    """'71/22/0/7': the shares of train_s, or '-' when the split was not measured."""
    if "compute_s" not in record or record["train_s"] <= 0:
        return "-"
    parts = (record["compute_s"], record["comm_exposed_s"], record["bubble_s"], record["overhead_s"])
    return "/".join(f"{100 * p / record['train_s']:.0f}" for p in parts)


def _megabytes(value: float) -> str:
    return f"{value / 1e6:.3g} MB"


def split_caption(summary: dict[str, Any], info: dict[str, Any]) -> Optional[str]:
    """What the split column means, with the analytic expectation where there is one."""
    if summary.get("median_compute_s") is None:
        return None
    text = (f"{SPLIT_HEADER}: train_s as compute / exposed communication / pipeline bubble / loop overhead; "
            f"all communication, hidden or not: {summary['median_comm_s']:.3f} s per epoch (comm_s)")
    if info.get("bubble_expected") is not None:
        text += (f"; bubble {100 * summary['bubble_fraction']:.0f}% of the step measured vs (p-1)/(m+p-1) = "
                 f"{100 * info['bubble_expected']:.0f}% expected ({info.get('schedule', 'pipeline')})")
    if summary.get("median_comm_bytes"):
        text += f"; {_megabytes(summary['median_comm_bytes'])} per step"
        if info.get("comm_bytes_expected"):
            text += f" ({_megabytes(info['comm_bytes_expected'])} expected)"
        if summary.get("median_comm_gbps"):
            text += f", {summary['median_comm_gbps']:.3g} Gbit/s on the link"
    return text
