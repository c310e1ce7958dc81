"""`hpml version`: what a bug report needs to know about this installation."""
from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, version

# extra (pyproject's optional-dependencies) -> the distributions it installs
EXTRAS = {
    "export": ("torchao", "onnx", "onnxscript", "onnxruntime"),
    "cam": ("grad-cam",),
    "slurm": ("submitit", "hydra-submitit-launcher"),
    "bench": ("lightning",),
    "docs": ("mkdocs", "mkdocs-material"),
    "test": ("pytest",),
}
CORE = ("torchvision", "hydra-core", "omegaconf", "torchmetrics", "wandb", "tensorboard")


def _installed(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def environment_report(hpml_version: str) -> str:
    """Multi-line text: hpml, Python, platform, torch/CUDA/GPUs, core packages, each extra."""
    import torch

    cuda = torch.version.cuda or "none (CPU build)"
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    lines = [f"hpml {hpml_version}",
             f"python {platform.python_version()} ({sys.executable})",
             f"platform {platform.platform()}",
             f"torch {torch.__version__}, CUDA {cuda}, cuDNN {torch.backends.cudnn.version() or 'none'}",
             f"GPUs: {', '.join(gpus) if gpus else 'none visible'}",
             "packages: " + ", ".join(f"{d} {_installed(d) or 'missing'}" for d in CORE)]
    for extra, dists in EXTRAS.items():
        found = [f"{d} {v}" for d in dists if (v := _installed(d))]
        state = "installed" if len(found) == len(dists) else ("partly installed" if found else "not installed")
        lines.append(f"extra [{extra}]: {state}" + (f" ({', '.join(found)})" if found else ""))
    return "\n".join(lines)


def package_version() -> str:
    try:
        return version("hpml-bench")
    except PackageNotFoundError:  # run from a source tree that was never pip-installed
        return "unknown (not installed)"


def version_command(args: list[str]) -> int:
    """The `hpml version` command."""
    print(environment_report(package_version()))
    return 0
