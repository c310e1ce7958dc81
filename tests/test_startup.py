"""Start-up stays light: `import hpml_bench.train.run` loads no plotting/logging/export stack, and
torchmetrics comes without scipy and matplotlib (docs: "Start-up"). summary.json's startup_s:
tests/test_synthetic_device.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys

# What a plain `hpml train` never uses before its first step; each was imported by
# `hpml_bench.train.run` once (scipy and matplotlib through torchmetrics, pandas through the report).
HEAVY = ("pandas", "matplotlib", "scipy", "wandb", "tensorboard", "torch.utils.tensorboard", "onnx",
         "onnxruntime", "timm", "torchmetrics", "pytorch_grad_cam", "submitit", "seaborn")

_PROBE = """
import json, sys, time
t = time.perf_counter()
import {module}
print(json.dumps({{"s": time.perf_counter() - t, "loaded": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def _import(module: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(module=module, heavy=HEAVY)],
                          capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_run_module_imports_no_heavy_stack():
    # The floor a ResNet run pays anyway: torch and torchvision (whose ops import torch._dynamo,
    # which optimizer.step also imports). Measured beside hpml's import, under the same load.
    floor = _import("torch, torchvision")
    run = _import("hpml_bench.train.run")
    assert run["loaded"] == [], f"import hpml_bench.train.run loaded {run['loaded']}: import them where they are used"
    # Generous (a shared, noisy machine): hpml's own imports (Hydra, the registries) cost about
    # 0.5 s on two cores; torchmetrics alone would add ~1.6 s, pandas ~0.3 s.
    assert run["s"] <= 1.5 * floor["s"] + 3.0, (run, floor)


def test_metrics_import_torchmetrics_without_scipy_and_matplotlib():
    code = """
import json, sys, torch
from hpml_bench.tasks import build_task
seg = build_task("segmentation", 2).metrics()
acc = build_task("classification", 3).metrics()
acc.update(torch.tensor([[2.0, 0, 0], [0, 2.0, 0]]), torch.tensor([0, 0]))
seg.update(torch.randn(2, 2, 4, 4), torch.randint(0, 2, (2, 4, 4)))
loaded = [m for m in ("scipy", "matplotlib") if m in sys.modules]
import scipy.signal, matplotlib  # still importable afterwards, for whoever needs them
print(json.dumps({"loaded": loaded, "acc": acc.compute()["acc"].item(), "seg": sorted(seg.compute())}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == [] and out["acc"] == 0.5 and out["seg"] == ["dice", "miou", "pixel_acc"]
