"""`hpml export` / `hpml predict`: every model round-trips through every format with parity,
a refused export leaves nothing behind, and preprocessing equals training's."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from deploy_helpers import (
    DEPLOY_MODELS,
    make_run,
    model_overrides,
    parse_lines,
    write_shape_pngs,
)
from PIL import Image

from hpml_bench.data.files import FileDatasetConfig, FileImages, Sample
from hpml_bench.deploy.export import ExportConfig, export_run, sha256
from hpml_bench.deploy.formats import FORMATS
from hpml_bench.deploy.preprocess import load_input
from hpml_bench.deploy.validate import RunData
from hpml_bench.train.trained_run import load_trained, preprocess_spec

FAST = ["torchscript", "exported", "onnx"]
# AOTInductor compiles C++ (~14 s of CPU each): fp32 for every model; the int8 package for a
# conv/attention and a segmentation model (every model's int8 graph is checked without compiling).
COMPILED = [(name, "aoti") for name in DEPLOY_MODELS] + [("hct_tiny", "int8"), ("segnet_tiny", "int8")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run folder per model, made once for the module (random weights, shapes data)."""
    root = tmp_path_factory.mktemp("deploy_runs")
    return {name: make_run(root / name, model_overrides(name)) for name in DEPLOY_MODELS}


def _export(run, fmt: str, **over):
    trained = load_trained(run)
    cfg = ExportConfig(run=str(run), format=fmt, **{"calibration_batches": 2, **over})
    return trained, export_run(trained, FORMATS.get(fmt)(), RunData(trained, 8, cfg.calibration_batches), cfg)


def _check_round_trip(run, fmt: str):
    trained, artifact = _export(run, fmt, int8_max_drop=1.0)  # random weights: int8 accuracy is noise here
    meta = json.loads((artifact.parent / "meta.json").read_text())
    assert meta["format"] == fmt and meta["model"] == trained.model_name and meta["sha256"] == sha256(artifact)
    assert meta["preprocess"]["size"] == [trained.dataset_cfg.image_size] * 2
    # Load the published file anew and compare with eager on other inputs (batch 3 and 1).
    runner = FORMATS.get(fmt)().load(artifact)
    x = RunData(trained, parity_images=16).example()[-3:]  # validation images the export's check did not use
    with torch.no_grad():
        for batch in (x, x[:1]):
            expected, got = trained.model(batch), runner(batch)
            assert got.shape == expected.shape
            if fmt == "int8":  # int8 is scored on accuracy; its logits stay close but not within 1e-4
                assert meta["check"]["kind"] == "int8_accuracy" and 0 <= meta["check"]["int8"] <= 1
                assert torch.corrcoef(torch.stack([got.flatten(), expected.flatten()]))[0, 1] > 0.9
            else:
                assert meta["check"]["max_abs_diff"] <= 1e-4
                scale = max(1.0, expected.abs().max().item())  # the export's own criterion
                assert (got - expected).abs().max().item() / scale <= 1e-4


@pytest.mark.parametrize("fmt", FAST)
@pytest.mark.parametrize("name", DEPLOY_MODELS)
def test_every_model_round_trips_through_every_format(runs, name, fmt):
    _check_round_trip(runs[name], fmt)


@pytest.mark.slow
@pytest.mark.parametrize("name, fmt", COMPILED)
def test_every_model_round_trips_through_aoti_and_int8(runs, name, fmt):
    _check_round_trip(runs[name], fmt)


@pytest.mark.parametrize("name", DEPLOY_MODELS)
def test_every_model_quantizes_to_an_exportable_int8_graph(runs, name):
    """pt2e int8 (the graph AOTInductor compiles for format=int8) for every model, against eager."""
    from hpml_bench.deploy.formats import export_program
    from hpml_bench.deploy.quantize import quantize_int8

    trained = load_trained(runs[name])
    data = RunData(trained, 8, 2)
    x = data.example()
    converted = quantize_int8(trained.model, x, data.calibration())
    program = export_program(converted, x)  # what the int8 format hands to AOTInductor
    with torch.no_grad():
        expected, got = trained.model(x), program.module()(x)
    assert got.shape == expected.shape
    assert any(n.target == torch.ops.quantized_decomposed.quantize_per_tensor.default for n in program.graph.nodes)
    assert torch.corrcoef(torch.stack([got.flatten(), expected.flatten()]))[0, 1] > 0.9


@pytest.mark.parametrize("width, quantized", [(16, False), (48, False), (64, True)])
def test_int8_quantizes_a_max_pool_only_at_a_multiple_of_64_channels(width, quantized):
    """quantized::max_pool2d runs scalar below its 64-lane vectors (16 channels: 7x slower than
    the float pool Inductor fuses), so narrower pools stay float; the convs around them do not."""
    from torch import nn

    from hpml_bench.deploy.quantize import quantize_int8

    model = nn.Sequential(nn.Conv2d(3, width, 3), nn.MaxPool2d(2), nn.Conv2d(width, 8, 3),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)).eval()
    x = torch.randn(2, 3, 16, 16)
    graph = quantize_int8(model, x, [x]).graph
    dequantize = torch.ops.quantized_decomposed.dequantize_per_tensor.default
    pool = next(n for n in graph.nodes if n.target == torch.ops.aten.max_pool2d.default)
    assert (pool.args[0].target == dequantize) == quantized
    convs = [n for n in graph.nodes if n.target == torch.ops.aten.conv2d.default]
    assert len(convs) == 2 and all(n.args[0].target == dequantize for n in convs)


@pytest.mark.slow
def test_int8_exports_a_static_batch_of_one(runs, monkeypatch):
    from hpml_bench.deploy.formats import per_sample

    trained, artifact = _export(runs["hct_tiny"], "int8", batch="1", int8_max_drop=1.0)
    assert json.loads((artifact.parent / "meta.json").read_text())["input"]["batch"] == 1
    monkeypatch.setenv("AOTI_RUNTIME_CHECK_INPUTS", "1")  # AOTInductor's own input check, off by default
    run = FORMATS.get("int8")().load(artifact)
    x = RunData(trained, parity_images=16).example()[-3:]
    with pytest.raises(RuntimeError, match="expected: 1, but got: 3"):
        run(x)
    with torch.no_grad():
        got, expected = per_sample(run)(x), trained.model(x)
    assert got.shape == expected.shape
    assert torch.corrcoef(torch.stack([got.flatten(), expected.flatten()]))[0, 1] > 0.9


def test_export_refuses_a_differing_artifact_and_writes_nothing(runs, monkeypatch):
    run = runs["mlp"]
    loader = FORMATS.get("exported").load
    monkeypatch.setattr(FORMATS.get("exported"), "load", lambda self, path: (lambda x: loader(self, path)(x) + 1e-2))
    def snapshot():  # every file under export/ with its bytes: a refused export changes none
        folder = run / "export"
        return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}

    before = snapshot()  # an earlier test may have exported this run already: it must survive
    with pytest.raises(Exception, match="differs from the eager model"):
        _export(run, "exported")
    assert snapshot() == before
    assert not [p for p in (run / "export").glob(".*")] if (run / "export").exists() else True


def test_export_and_predict_through_the_cli(hpml, tmp_path):
    run = make_run(tmp_path / "run", model_overrides("mlp"))
    result = hpml("export", f"run={run}", "format=torchscript")
    assert result.rc == 0, result.err
    lines = result.out.strip().splitlines()
    assert lines[-1] == str(run / "export" / "torchscript" / "model.ts") and "parity" in lines[-2]
    images = tmp_path / "images"
    write_shape_pngs(images, [16, 16, 40])  # 40 px gets resized to the run's 16 px
    eager = hpml("predict", f"run={run}", f"images={images}")
    traced = hpml("predict", f"run={run}", f"images={images}", "format=torchscript", "topk=2")
    assert eager.rc == 0 and traced.rc == 0, eager.err + traced.err
    a, b = parse_lines(eager.out), parse_lines(traced.out)
    assert sorted(a) == sorted(b) == ["img00_16.png", "img01_16.png", "img02_40.png"]
    for name in a:
        assert a[name][0][0] == b[name][0][0] and len(b[name]) == 2
        assert abs(a[name][0][1] - b[name][0][1]) <= 1e-4


@pytest.mark.parametrize("args, message", [
    (["format=torchscript"], "needs run="),
    (["run=nowhere"], "not a folder"),
    (["run={run}", "format=tensorrt"], "unknown format"),
    (["run={run}", "checkpoint=last"], "no checkpoint last.pt"),
    (["run={run}", "formats=onnx"], "formats"),
    (["run={run}", "batch=4"], "export.batch=4: use dynamic (any batch) or 1"),
])
def test_export_mistakes_are_one_line(hpml, tmp_path, args, message):
    run = make_run(tmp_path / "run", model_overrides("mlp"))
    result = hpml("export", *[a.format(run=run) for a in args])
    assert result.rc == 2 and message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not (run / "export").exists()


def test_predict_without_an_export_names_the_command(hpml, tmp_path):
    run = make_run(tmp_path / "run", model_overrides("mlp"))
    write_shape_pngs(tmp_path / "images", [16])
    result = hpml("predict", f"run={run}", f"images={tmp_path / 'images'}", "format=aoti")
    assert result.rc == 2 and "hpml export run=" in result.err


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("crop", [None, 24])
def test_preprocessing_equals_trainings_validation_transform(tmp_path, channels, crop):
    rng = np.random.default_rng(0)
    for h, w in [(37, 53), (100, 80), (32, 32), (25, 30)]:
        path = tmp_path / f"x{h}_{w}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        cfg = FileDatasetConfig(name="files", image_size=32, channels=channels, center_crop=crop if min(h, w) >= 24 else None)
        expected = FileImages([Sample(path, 0)], cfg, "classification", train=False)[0][0]
        got = load_input(path, preprocess_spec(cfg))
        assert got.shape == (1, channels, 32, 32)
        assert torch.equal(got[0], expected)  # bit for bit: the same resize kernel and float ops


@pytest.mark.slow
def test_int8_of_a_trained_model_loses_at_most_one_point(tmp_path):
    """pt2e int8 (calibrated on training batches) against fp32 on the run's 400 validation images."""
    from hpml_bench.cli.main import main

    run = tmp_path / "resnet18"  # a conv net: its convolutions are what the int8 kernels replace
    assert main(["train", "model=resnet18", f"run_dir={run}", "dataset.image_size=32", "trainer.epochs=5",
                 "trainer.progress=never"]) == 0
    _, artifact = _export(run, "int8", calibration_batches=8)
    check = json.loads((artifact.parent / "meta.json").read_text())["check"]
    assert check["samples"] == 400 and check["fp32"] > 0.9  # a model that learned (chance is 0.25)
    assert check["fp32"] - check["int8"] <= 0.01, check
