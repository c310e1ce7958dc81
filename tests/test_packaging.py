"""The wheel carries hpml's top-level conf/ (as hpml_bench.conf) and the search-path plugin."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib
from setuptools import find_namespace_packages

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_is_listed_in_pyproject():
    """pyproject.toml lists its packages (a find cannot map conf/ into hpml_bench); a new
    subpackage missing from that list would be left out of the wheel."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {p for p in find_namespace_packages(str(ROOT / "src"), include=["hpml_bench*", "hydra_plugins.*"])
               if (ROOT / "src" / p.replace(".", "/") / "__init__.py").is_file()}
    assert on_disk - set(tool["packages"]) == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert tool["package-dir"]["hpml_bench.conf"] == "conf" and "hpml_bench.conf" in tool["packages"]
    assert not (ROOT / "src/hpml_bench/conf").exists()  # one copy of the configs, at the top level


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HPML_CONFIG_DIR")}
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**env, "WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert proc.returncode == 0, f"{' '.join(map(str, args))}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_wheel_installs_and_trains_outside_the_checkout(tmp_path):
    # Build from a copy, so the build leaves nothing in the checkout.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("src", "conf"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
          str(source)], tmp_path)
    wheel = next((tmp_path / "dist").glob("hpml_bench-*.whl"))
    # A fresh venv that sees this environment's packages (torch, Hydra, ...) but not its hpml.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    python = venv / "bin/python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        tmp_path).stdout.strip())
    (purelib / "_base_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--ignore-installed",
          str(wheel)], tmp_path)
    outside = tmp_path / "user"
    outside.mkdir()
    where = _run([str(python), "-c", "import hpml_bench, hpml_bench.config.search_path as c; print(hpml_bench.__file__, c.HPML_CONF)"],
                 outside).stdout.split()
    assert all(Path(p).is_relative_to(purelib) for p in where), where  # the wheel's copy, not src/
    hpml = venv / "bin/hpml"
    assert "model:\n  name: resnet" in _run([str(hpml), "train", "--cfg", "job"], outside).stdout
    # The user's folder goes before the wheel's configs through the installed plugin.
    _run([str(hpml), "init", "."], outside)
    _run([str(hpml), "train", "experiment=mine", "model=mlp", "trainer.epochs=1", "trainer.progress=never",
          "run_dir=runs/first"], outside)
    config = (outside / "runs/first/config.yaml").read_text()
    assert "root: data" in config and (outside / "runs/first/summary.json").is_file()
