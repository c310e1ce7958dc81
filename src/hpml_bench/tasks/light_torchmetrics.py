"""Import torchmetrics without the two imports hpml never uses, which were ~1.5 s of every
run's start-up on two cores (docs: "Start-up"):

- `torchmetrics/__init__` and its audio packages `import scipy.signal` (~1 s) only to patch
  `scipy.signal.hamming` for the third-party SRMRpy package; torchmetrics' metrics that use
  scipy (PIT with 3+ speakers, the scipy distance engine) import it themselves when called.
- `torchmetrics.utilities.plot` imports matplotlib (~0.5 s) for `Metric.plot()`; in this
  process `.plot()` then says matplotlib is missing (hpml draws its plots with matplotlib itself).

This loads torchmetrics' availability flags first, turns those two off, then imports
torchmetrics. Anything unexpected (another torchmetrics layout) falls back to a plain import.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

_FLAGS = "torchmetrics.utilities.imports"
_SKIPPED = ("_SCIPI_AVAILABLE", "_MATPLOTLIB_AVAILABLE")  # import-time only (see above)


def import_torchmetrics():
    """torchmetrics, imported once per process (without scipy.signal and matplotlib if new)."""
    if "torchmetrics" in sys.modules:
        return sys.modules["torchmetrics"]
    hide_scipy = "scipy" not in sys.modules
    try:
        spec = importlib.util.find_spec("torchmetrics")  # locates, does not import
        flags_spec = importlib.util.spec_from_file_location(_FLAGS, Path(spec.origin).parent / "utilities" / "imports.py")
        flags = importlib.util.module_from_spec(flags_spec)
        flags_spec.loader.exec_module(flags)  # imports only lightning_utilities
        for name in _SKIPPED:
            getattr(flags, name).available = False
        sys.modules[_FLAGS] = flags
        if hide_scipy:  # the root package's own check (find_spec) then reads "not installed"
            sys.modules["scipy"] = None
        module = importlib.import_module("torchmetrics")
        sys.modules["torchmetrics.utilities"].imports = flags
        return module
    except Exception:  # noqa: BLE001 - a torchmetrics this shim does not know: the plain import
        for name in [n for n in sys.modules if n == "torchmetrics" or n.startswith("torchmetrics.")]:
            del sys.modules[name]
        return importlib.import_module("torchmetrics")
    finally:
        if hide_scipy and sys.modules.get("scipy", 0) is None:
            del sys.modules["scipy"]
