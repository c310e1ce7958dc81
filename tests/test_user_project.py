"""A user's own project in a folder: their mynet.py trained, resumed, run under DDP and as a
pipeline, exported to every format, predicted, explained and benched, all through the real
CLI from that folder; and a timm and a torchvision model trained, exported and predicted."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import hpml_subprocess
from deploy_helpers import USER_MYNET, parse_lines, write_shape_pngs

pytestmark = pytest.mark.slow

MYNET = USER_MYNET  # the user's own model
MODEL = ["model=custom", "model.target=mynet:MyNet", "model.split_after=[features]"]
TINY = ["dataset.num_train=32", "dataset.num_val=16", "dataset.image_size=16", "dataset.batch_size=8",
        "trainer.epochs=1", "trainer.progress=never"]
FORMATS = {"torchscript": "model.ts", "exported": "model.pt2", "aoti": "model.pt2", "onnx": "model.onnx", "int8": "model.pt2"}


def cli(project: Path, *args: str, timeout: float = 600):
    result = hpml_subprocess(list(args), cwd=project, env={"OMP_NUM_THREADS": "1"}, timeout=timeout)
    assert result.rc == 0, result.err[-2000:]
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The user's folder with mynet.py, one trained run (runs/base) and a few PNGs."""
    folder = tmp_path_factory.mktemp("user_project")
    (folder / "mynet.py").write_text(MYNET)
    write_shape_pngs(folder / "images", [16, 16, 24])
    cli(folder, "train", *MODEL, *TINY, "run_dir=runs/base")
    return folder


def test_the_run_records_where_the_code_came_from_and_resumes(project):
    source = json.loads((project / "runs/base/model_source.json").read_text())
    assert source["file"] == str((project / "mynet.py").resolve()) and len(source["sha256"]) == 64
    cli(project, "train", "resume=runs/base", "trainer.epochs=2")
    assert list(pd.read_csv(project / "runs/base/epochs.csv")["epoch"]) == [1, 2]


def test_ddp_with_two_ranks_and_a_two_stage_pipeline(project):
    cli(project, "train", *MODEL, *TINY, "strategy=ddp", "strategy.nproc_per_node=2", "run_dir=runs/ddp")
    cli(project, "train", *MODEL, *TINY, "strategy=pipe", "strategy.nproc_per_node=2", "strategy.n_microbatches=2",
        "run_dir=runs/pipe")
    for run in ("ddp", "pipe"):
        summary = json.loads((project / "runs" / run / "summary.json").read_text())
        assert summary["world_size"] == 2 and summary["strategy"] == run


@pytest.fixture(scope="module")
def exported(project):
    for fmt in FORMATS:  # 16 validation images: one flipped answer is 6 points, so int8's accuracy gate is off
        cli(project, "export", "run=runs/base", f"format={fmt}", *(["int8_max_drop=1"] if fmt == "int8" else []))
    return project / "runs/base/export"


def test_every_export_format_predicts_what_eager_does(project, exported):
    eager = parse_lines(cli(project, "predict", "run=runs/base", "images=images", "topk=2").out)
    assert len(eager) == 3
    for fmt, file in FORMATS.items():
        assert (exported / fmt / file).is_file() and (exported / fmt / "meta.json").is_file()
        got = parse_lines(cli(project, "predict", "run=runs/base", "images=images", f"format={fmt}", "topk=2").out)
        assert {n: c[0][0] for n, c in got.items()} == {n: c[0][0] for n, c in eager.items()} or fmt == "int8", fmt


@pytest.mark.cpp
def test_native_hct_runs_the_custom_models_artifacts(project, exported):
    import sys

    from test_deploy_cpp import REPO  # noqa: F401  (the same build as the C++ tests)

    build = subprocess.run(["bash", str(REPO / "cpp" / "build.sh")], capture_output=True, text=True, timeout=600,
                           env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert build.returncode == 0, build.stderr
    exe = build.stdout.strip().splitlines()[-1]
    for fmt in ("torchscript", "aoti"):
        cpp = subprocess.run([exe, str(exported / fmt / FORMATS[fmt]), str(project / "images"), "--topk", "2"],
                             capture_output=True, text=True, timeout=300)
        assert cpp.returncode == 0, cpp.stderr
        py = parse_lines(cli(project, "predict", "run=runs/base", "images=images", f"format={fmt}", "topk=2").out)
        got = parse_lines(cpp.stdout)
        assert sorted(got) == sorted(py)
        for name in py:
            assert [c for c, _ in got[name]] == [c for c, _ in py[name]]
            assert max(abs(p - q) for (_, p), (_, q) in zip(got[name], py[name])) <= 1e-4


def test_cam_and_a_bench_whose_cells_use_it(project):
    cli(project, "cam", "run=runs/base", "images=images/img00_16.png")
    assert (project / "runs/base/cam/img00_16_gradcam.png").stat().st_size > 1000
    bench = project / "mybench.yaml"
    base = "".join(f"    - '{o}'\n" for o in [*MODEL, *TINY, "trainer.checkpoint_every=0"])  # quoted: [features]
    bench.write_text(f"name: mybench\nfull:\n  base:\n{base}  axes: {{dataset.batch_size: [8, 16]}}\n"
                     f"  baseline: {{dataset.batch_size: 8}}\n")
    cli(project, "bench", f"bench={bench}", "bench.out_dir=bench_out")
    tidy = pd.read_csv(project / "bench_out/bench.csv")
    assert list(tidy.status) == ["done", "done"]


def test_changed_or_gone_code_is_said_in_one_line(project):
    code = project / "mynet.py"
    try:
        code.write_text(MYNET + "\n# edited after training\n")
        changed = cli(project, "predict", "run=runs/base", "images=images")
        assert changed.err.count("changed since") == 1 and "mynet.py" in changed.err
        code.rename(project / "mynet.bak")
        gone = hpml_subprocess(["predict", "run=runs/base", "images=images"], cwd=project)
        assert gone.rc == 2 and "which is gone; put that file back" in gone.err
        assert len(gone.err.strip().splitlines()) == 1
    finally:
        if (project / "mynet.bak").exists():
            (project / "mynet.bak").rename(code)
        code.write_text(MYNET)


@pytest.mark.parametrize("model", [["model=timm", "model.arch=test_efficientnet"],
                                   ["model=torchvision", "model.arch=squeezenet1_1"]])
def test_timm_and_torchvision_models_train_export_and_predict(tmp_path, model):
    write_shape_pngs(tmp_path / "images", [32, 40])
    cli(tmp_path, "train", *model, *TINY, "dataset.image_size=32", "run_dir=runs/r")
    for fmt in ("torchscript", "onnx"):
        cli(tmp_path, "export", "run=runs/r", f"format={fmt}")
    eager = parse_lines(cli(tmp_path, "predict", "run=runs/r", "images=images").out)
    onnx = parse_lines(cli(tmp_path, "predict", "run=runs/r", "images=images", "format=onnx").out)
    assert len(eager) == 2 and {n: c[0][0] for n, c in onnx.items()} == {n: c[0][0] for n, c in eager.items()}


def test_eval_scores_the_users_run_as_its_validation_did(project):
    cli(project, "eval", "run=runs/base", "checkpoint=last")
    result = json.loads(next((project / "runs/base/eval").glob("val*.json")).read_text())
    last = pd.read_csv(project / "runs/base/epochs.csv").iloc[-1]
    assert result["metrics"]["acc"] == pytest.approx(last["val_acc"], abs=1e-6)
    assert result["samples"] == 16
