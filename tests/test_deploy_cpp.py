"""cpp/native_hct against `hpml predict`: same classes, probabilities within 1e-4, same masks.

Builds cpp/build/native_hct with cpp/build.sh (cmake, g++, libopencv-dev: `bash cpp/build.sh
--install-deps` installs them), trains tiny models on shapes, exports TorchScript and AOTI.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import hpml_subprocess
from deploy_helpers import make_run, parse_lines, write_shape_pngs
from PIL import Image

from hpml_bench.cli.main import main

pytestmark = [pytest.mark.cpp, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
TRAIN = ["dataset.num_train=256", "dataset.num_val=64", "dataset.batch_size=32", "trainer.epochs=2",
         "trainer.progress=never"]


@pytest.fixture(scope="module")
def native_hct():
    proc = subprocess.run(["bash", str(REPO / "cpp" / "build.sh")], capture_output=True, text=True, timeout=600,
                          env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def _train_and_export(root: Path, name: str, overrides: list[str], formats: list[str]) -> Path:
    run = root / name
    assert main(["train", f"model={name}", f"run_dir={run}", *overrides, *TRAIN]) == 0
    for fmt in formats:
        assert main(["export", f"run={run}", f"format={fmt}"]) == 0
    return run


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return _train_and_export(tmp_path_factory.mktemp("cpp_cls"), "hct_tiny", ["dataset.image_size=32"], ["torchscript", "aoti"])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pngs")
    write_shape_pngs(folder, [32, 32, 32, 48, 75, 21])  # the model's size, and sizes the loaders resize
    write_shape_pngs(folder / "grey", [40], grey=True)
    (folder / "grey" / "img00_40.png").rename(folder / "zz_grey.png")
    return folder


def _native(exe: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=300)


def _predict(run: Path, images: Path, fmt: str, *extra) -> str:
    result = hpml_subprocess(["predict", f"run={run}", f"images={images}", f"format={fmt}", *extra], cwd=run)
    assert result.rc == 0, result.err
    return result.out


@pytest.mark.parametrize("fmt, file", [("torchscript", "model.ts"), ("aoti", "model.pt2")])
def test_native_hct_matches_hpml_predict(native_hct, classifier, images, fmt, file):
    cpp = _native(native_hct, classifier / "export" / fmt / file, images, "--topk", 4)
    assert cpp.returncode == 0, cpp.stderr
    py, got = parse_lines(_predict(classifier, images, fmt, "topk=4")), parse_lines(cpp.stdout)
    assert sorted(got) == sorted(py) and len(got) == 7
    for name in py:
        assert [c for c, _ in got[name]] == [c for c, _ in py[name]], name
        assert max(abs(p - q) for (_, p), (_, q) in zip(got[name], py[name])) <= 1e-4, name
    eager = parse_lines(_predict(classifier, images, "eager", "topk=4"))
    assert all(eager[n][0][0] == got[n][0][0] for n in eager)


def test_native_hct_segmentation_mask_matches(native_hct, images, tmp_path_factory):
    run = _train_and_export(tmp_path_factory.mktemp("cpp_seg"), "unet_tiny",
                            ["task=segmentation", "dataset.image_size=32"], ["torchscript"])
    out_py, out_cpp = run / "masks_py", run / "masks_cpp"
    py = _predict(run, images, "torchscript", f"out={out_py}")
    cpp = _native(native_hct, run / "export" / "torchscript" / "model.ts", images, "--out", out_cpp)
    assert cpp.returncode == 0, cpp.stderr
    py_lines = {Path(line.split()[0]).name: line.split()[1] for line in py.strip().splitlines()}
    cpp_lines = {Path(line.split()[0]).name: line.split()[1] for line in cpp.stdout.strip().splitlines()}
    assert py_lines == cpp_lines and len(cpp_lines) == 7  # the foreground fractions, to six decimals
    for png in out_py.glob("*_mask.png"):
        a, b = np.asarray(Image.open(png)), np.asarray(Image.open(out_cpp / png.name))
        assert a.shape == (32, 32) and np.array_equal(a, b), png.name
        assert set(np.unique(a)) <= {0, 255}


def test_native_hct_reads_grey_models_like_pil(native_hct, images, tmp_path):
    """A one-channel run: both loaders turn colour PNGs grey with PIL's formula."""
    run = make_run(tmp_path / "grey", ["model=hct_tiny", "dataset=synthetic", "dataset.channels=1",
                                       "dataset.num_classes=3", "dataset.image_size=32", "dataset.num_val=8"])
    assert main(["export", f"run={run}", "format=torchscript"]) == 0
    cpp = _native(native_hct, run / "export" / "torchscript" / "model.ts", images)
    assert cpp.returncode == 0, cpp.stderr
    py, got = parse_lines(_predict(run, images, "torchscript")), parse_lines(cpp.stdout)
    for name in py:
        assert [c for c, _ in got[name]] == [c for c, _ in py[name]]
        assert max(abs(p - q) for (_, p), (_, q) in zip(got[name], py[name])) <= 1e-4


def test_native_hct_errors_are_one_line(native_hct, classifier, images, tmp_path):
    art = classifier / "export" / "aoti" / "model.pt2"
    corrupt = tmp_path / "model.ts"
    corrupt.write_bytes(b"not a model")
    cases = [
        (_native(native_hct, tmp_path / "missing.ts", images), "no meta file"),
        (_native(native_hct, art, tmp_path / "no_images"), "no such image"),
        (_native(native_hct, corrupt, images, "--meta", classifier / "export" / "torchscript" / "meta.json"), "error:"),
        (_native(native_hct, art, images, "--meta", tmp_path / "nope.json"), "no meta file"),
    ]
    for proc, message in cases:
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr
        assert len([l for l in proc.stderr.splitlines() if l.startswith("error:")]) == 1
    damaged = tmp_path / "damaged"  # a flipped byte in a copy of the export: refused before loading
    shutil.copytree(classifier / "export" / "torchscript", damaged)
    data = bytearray((damaged / "model.ts").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (damaged / "model.ts").write_bytes(bytes(data))
    proc = _native(native_hct, damaged / "model.ts", images)
    assert proc.returncode != 0 and "model.ts is damaged: its sha256 differs from" in proc.stderr, proc.stderr
    bench = _native(native_hct, art, images, "--bench", 5, "--batch", 2)
    assert bench.returncode == 0 and "latency_ms median=" in bench.stdout


def test_a_batch_one_aoti_export_agrees_with_predict_and_refuses_other_batches(native_hct, images, tmp_path):
    run = make_run(tmp_path / "b1", ["model=hct_tiny", "dataset.image_size=32", "dataset.num_val=8"])
    assert main(["export", f"run={run}", "format=aoti", "batch=1"]) == 0
    art = run / "export" / "aoti" / "model.pt2"
    meta = json.loads((art.parent / "meta.json").read_text())
    assert meta["input"]["batch"] == 1 and meta["check"]["max_abs_diff"] <= 1e-4  # parity ran per sample
    cpp = _native(native_hct, art, images, "--topk", 2)
    assert cpp.returncode == 0, cpp.stderr
    py, got = parse_lines(_predict(run, images, "aoti", "topk=2")), parse_lines(cpp.stdout)
    assert sorted(got) == sorted(py) and len(got) == 7
    for name in py:
        assert [c for c, _ in got[name]] == [c for c, _ in py[name]], name
        assert max(abs(p - q) for (_, p), (_, q) in zip(got[name], py[name])) <= 1e-4, name
    refused = _native(native_hct, art, images, "--bench", 3, "--batch", 2)
    assert refused.returncode != 0 and "takes a batch of 1 (export.batch=1)" in refused.stderr, refused.stderr
    assert _native(native_hct, art, images, "--bench", 3).returncode == 0
    # Static, not a dynamic package that happens to be asked for one image: AOTInductor's own
    # input check (off unless asked for) rejects a batch of two.
    check = subprocess.run([sys.executable, "-c", "import sys, torch; m = torch._inductor.aoti_load_package(sys.argv[1]); "
                            "m(torch.zeros(2, 3, 32, 32))", str(art)], capture_output=True, text=True,
                           env={**os.environ, "AOTI_RUNTIME_CHECK_INPUTS": "1"})
    assert check.returncode != 0 and "expected: 1, but got: 2" in check.stderr
