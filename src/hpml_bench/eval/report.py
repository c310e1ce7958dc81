"""`hpml eval`'s files in <run>/eval/: JSON (every number), markdown (the tables) and the
confusion matrix as a PNG, each written to a temp file, flushed to disk and renamed."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_report(result: dict, folder: Path, stem: str) -> list[Path]:
    """<stem>.json, <stem>.md and <stem>_confusion.png in `folder`; returns their paths."""
    png = folder / f"{stem}_confusion.png"
    md = folder / f"{stem}.md"
    js = folder / f"{stem}.json"
    atomic_write_bytes(png, confusion_png(result))
    atomic_write_bytes(md, markdown(result, png.name).encode())
    atomic_write_bytes(js, (json.dumps(result, indent=2) + "\n").encode())
    return [js, md, png]


def markdown(result: dict, png_name: str) -> str:
    what = result["format"] + ("" if result["format"] == "eager" else f" ({result['artifact']})")
    what += "" if result.get("tta", "none") == "none" else f", test-time augmentation {result['tta']}"
    lines = [f"# eval: {result['run']} on {result['split']}", "",
             f"{result['task']}, checkpoint {result['checkpoint']} (epoch {result['epoch']}), {what}; "
             f"data set {result['dataset']['name']} at {result['dataset']['root']}, {result['samples']} samples "
             f"({result['seconds']:.1f} s)", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in result["metrics"].items()]
    per_class = result["per_class"]
    keys = list(next(iter(per_class.values())))
    lines += ["", "| class | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, scores in per_class.items():
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in scores.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"![confusion matrix]({png_name})", ""]
    return "\n".join(lines)


def confusion_png(result: dict) -> bytes:
    """Rows (true class) normalised to fractions, coloured; the counts written in each cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(result["confusion_matrix"], dtype=np.int64)
    names = result["class_names"]
    rows = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    side = max(3.5, 0.55 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    shown = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label=f"fraction of the true class's {result['unit']}")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(names) <= 20:  # beyond that the numbers no longer fit their cells
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rows[i, j] > 0.5 else "black")
    headline = ", ".join(f"{k} {v:.3f}" for k, v in result["metrics"].items() if k != "loss")
    ax.set_title(f"{result['split']} ({result['format']}): {headline}", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()
