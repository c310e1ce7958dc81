"""Start-up stays light: `import hpml_bench.run` loads no plotting/logging/export stack, and
summary.json records the seconds to the first step (docs: "Start-up")."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import TINY, only_run_folder, read_run

# What a plain `hpml train` never uses before its first step; each was imported by
# `hpml_bench.run` once (scipy and matplotlib through torchmetrics, pandas through the report).
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
    run = _import("hpml_bench.run")
    assert run["loaded"] == [], f"import hpml_bench.run loaded {run['loaded']}: import them where they are used"
    # Generous (a shared, noisy machine): hpml's own imports (Hydra, the registries) cost about
    # 0.5 s on two cores; torchmetrics alone would add ~1.6 s, pandas ~0.3 s.
    assert run["s"] <= 1.5 * floor["s"] + 3.0, (run, floor)


def test_summary_records_seconds_to_first_step(hpml, tmp_path):
    assert hpml("train", *TINY, "trainer.epochs=1").rc == 0
    _, summary = read_run(only_run_folder(tmp_path))
    # In-process (pytest started long ago), so only its presence and sign are checked here;
    # `hpml train` from a shell measures the real figure.
    assert summary["startup_s"] > 0
