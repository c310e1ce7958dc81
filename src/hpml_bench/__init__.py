"""hpml: train and benchmark image models under parallel strategies, and see where the time went."""
from __future__ import annotations

import time

# The fallback clock of summary.json's startup_s where /proc is missing (callbacks/startup.py).
IMPORTED_AT = time.perf_counter()

__version__ = "0.1.0"


def build_model(name: str, **overrides):
    """The model of config `conf/model/<name>.yaml` with field overrides, e.g.
    `build_model("hct", num_classes=5, in_channels=3)` -> nn.Module."""
    from hpml_bench.models.factory import build_model as _build

    return _build(name, **overrides)
