"""`hpml cam`: on a UNet trained on `shapes`, the heat map's mass lies inside the shapes'
masks; PNGs and a GIF land in <run>/cam/; each mistake is one line and exit 2."""
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hpml_bench.cli.main import main
from hpml_bench.data.shapes import generate_shapes
from hpml_bench.eval.cam import cam_layer, cam_methods, explain
from hpml_bench.train.trained_run import load_trained

SIZE = 32


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A unet_tiny run on shapes (segmentation), and held-out shape images with their masks."""
    root = tmp_path_factory.mktemp("cam")
    rc = main(["train", "model=unet_tiny", "dataset.num_train=128", "dataset.num_val=16", "dataset.batch_size=16",
               "trainer.epochs=2", "optimizer.lr=0.01", "trainer.progress=never", f"run_dir={root / 'run'}"])
    assert rc == 0
    images, _, masks = generate_shapes(8, SIZE, 0.08, seed=999)  # not the run's seed: unseen images
    frames = root / "frames"
    frames.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(frames / f"frame{i:02d}.png")
    return root / "run", frames, masks.numpy().astype(bool)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_heat_map_mass_lies_inside_the_shape(trained, method):
    run_dir, frames, masks = trained
    run = load_trained(run_dir)
    layer, reshape = cam_layer(run.model, "unet")
    cam = cam_methods()[method](model=run.model, target_layers=[layer], reshape_transform=reshape)
    inside = []
    for file, mask in zip(sorted(frames.iterdir()), masks):
        shown, batch = run.image_preprocess()(file)
        result = explain(cam, run.model, shown, batch, None, "segmentation", run.class_names())
        assert result.label == "foreground" and result.heat.shape == mask.shape
        inside.append(result.heat[mask].sum() / result.heat.sum())
    # The shapes cover ~16% of each image: a map blind to them would put ~16% of its mass inside.
    assert np.mean(inside) >= 0.7 and min(inside) >= 0.4, inside


@pytest.mark.slow
def test_cam_writes_a_png_per_image_and_a_gif(trained, capsys):
    run_dir, frames, _ = trained
    assert main(["cam", f"run={run_dir}", f"images={frames}", "--gif", "method=eigencam", "device=cpu"]) == 0
    pngs = sorted((run_dir / "cam").glob("*_eigencam.png"))
    assert [p.name for p in pngs] == [f"frame{i:02d}_eigencam.png" for i in range(8)]
    assert Image.open(pngs[0]).size[0] > 3 * SIZE  # three panels side by side
    gif = Image.open(run_dir / "cam" / "frames_eigencam.gif")
    assert gif.n_frames == 8 and gif.size == (SIZE, SIZE)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["method=gradcamm"], "unknown CAM method 'gradcamm' (did you mean 'gradcam'?)"),
    (["target=circle"], "unknown class 'circle'; choose one of: background, foreground"),
    (["target=7"], "target=7: the model has classes 0 to 1"),
    (["images=NOTES"], "is not an image that can be read"),
    (["run=EMPTYRUN"], "no checkpoint best.pt in checkpoints/; it saved none"),
    (["run=nowhere"], "run=nowhere is not a folder"),
    (["colour=red"], "unknown cam argument 'colour'"),
    (["device=tpu"], "device=tpu: use auto, cpu or cuda"),
])
def test_cam_mistakes_are_one_line(trained, tmp_path, capsys, args, message):
    run_dir, frames, _ = trained
    (tmp_path / "notes.txt").write_text("not an image")
    empty = tmp_path / "empty_run"  # the run's config, no checkpoints
    empty.mkdir()
    for name in ("config.yaml", "overrides.yaml"):
        shutil.copy(run_dir / name, empty / name)
    subs = {"NOTES": str(tmp_path / "notes.txt"), "EMPTYRUN": str(empty)}
    given = dict(a.split("=", 1) for a in [f"run={run_dir}", f"images={frames / 'frame00.png'}", *args])
    argv = ["cam", *(f"{k}={subs.get(v, v)}" for k, v in given.items())]
    before = sorted(p.name for p in run_dir.rglob("*"))
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in run_dir.rglob("*")) == before  # nothing written or lost


def test_cam_on_a_model_without_target_layer(tmp_path, capsys):
    run_dir = tmp_path / "mlp"
    assert main(["train", "model=mlp", "dataset.image_size=8", "dataset.num_train=16", "dataset.num_val=8",
                 "trainer.epochs=1", "trainer.progress=never", f"run_dir={run_dir}"]) == 0
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    capsys.readouterr()
    assert main(["cam", f"run={run_dir}", f"images={image}"]) == 2
    assert "model mlp declares no CAM target layer" in capsys.readouterr().err


def test_cam_preprocesses_like_the_runs_validation_data(tmp_path):
    """A shapes image saved as PNG comes back as exactly the tensor validation fed the model."""
    from hpml_bench.data.shapes import build_shapes
    from hpml_bench.train.config import compose_train, to_train_config
    from hpml_bench.train.trained_run import image_preprocess

    cfg = to_train_config(compose_train(["dataset.image_size=24", "dataset.num_train=4", "dataset.num_val=2"]))
    _, val = build_shapes(cfg.dataset, "classification")
    Image.fromarray(val.images[0].permute(1, 2, 0).numpy()).save(tmp_path / "v.png")
    shown, batch = image_preprocess(cfg.dataset)(tmp_path / "v.png")
    assert batch.shape == (1, 3, 24, 24)
    assert (batch[0] - val[0][0]).abs().max() < 1e-6


def fake_run(folder: Path, overrides: list[str]) -> Path:
    """A run folder as hpml train leaves it (config.yaml, overrides.yaml, best.pt), untrained."""
    import torch
    from omegaconf import OmegaConf

    from hpml_bench.models import build_model_from_config
    from hpml_bench.train.config import compose_train, to_train_config

    dcfg = compose_train(overrides)
    cfg = to_train_config(dcfg)
    dcfg.dataset.image_size = cfg.dataset.image_size
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(dcfg))
    (folder / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(overrides)))
    torch.save({"model": build_model_from_config(cfg.model).state_dict()}, folder / "checkpoints" / "best.pt")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet18", "hct_tiny", "iformer_tiny", "inception_v3_tiny", "fcn_tiny", "segnet_tiny"])
def test_every_declared_cam_layer_gives_a_map(tmp_path, capsys, model):
    run_dir = fake_run(tmp_path / "run", [f"model={model}"])
    image = tmp_path / "a shape.png"
    images, _, _ = generate_shapes(1, 40, 0.08, seed=5)
    Image.fromarray(images[0].permute(1, 2, 0).numpy()).save(image)
    assert main(["cam", f"run={run_dir}", f"images={image}", "target=1"]) == 0, capsys.readouterr().err
    assert (run_dir / "cam" / "a shape_gradcam.png").is_file()
