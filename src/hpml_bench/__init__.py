"""hpml: train and benchmark image models under parallel strategies, and see where the time went."""
from __future__ import annotations

from hpml_bench import started  # noqa: F401  (the clock startup_s falls back to, read at import)

__version__ = "0.1.0"


def build_model(name: str, **overrides):
    """The model of config `conf/model/<name>.yaml` with field overrides, e.g.
    `build_model("hct", num_classes=5, in_channels=3)` -> nn.Module."""
    # Imported here, not at the top: `import hpml_bench` (every command) must not pull in torch and Hydra.
    from hpml_bench.train.config import build_model as _build

    return _build(name, **overrides)
