"""Every registered model (its tiny variant where one exists) x every generated or fixture
data set, with the model's task, one step each: each cell trains or exits 2 with one line,
never a traceback. Image sizes are left at dataset.image_size=auto throughout."""
from pathlib import Path

import pytest
from fixtures_data import make_hct_lists, make_image_folder, make_lgg, make_retinopathy

from hpml_bench.cli.listing import SOURCES
from hpml_bench.cli.main import main
from hpml_bench.config.groups import choices
from hpml_bench.models import MODELS
from hpml_bench.train.config import model_config

ONE_STEP = ["dataset.batch_size=2", "trainer.epochs=1", "trainer.max_steps_per_epoch=1", "trainer.checkpoint_every=0",
            "trainer.progress=never"]
# native_size=40: the file sets' own size is one UNet/FCN refuse (not divisible by 16/32) and
# InceptionV3 (min 75) too, so `auto` must fall back to their declared sizes.
DATASETS = {
    "shapes": (["dataset.num_train=4", "dataset.num_val=2"], {"classification", "segmentation"}),
    "synthetic": (["dataset.num_train=4", "dataset.num_val=2"], {"classification", "segmentation"}),
    "image_folder": (["dataset.root={image_folder}", "dataset.native_size=40"], {"classification"}),
    "hct": (["dataset.root={hct}", "dataset.native_size=40"], {"classification"}),
    "retinopathy": (["dataset.root={retinopathy}", "dataset.native_size=40", "dataset.val_fraction=0.3"], {"classification"}),
    "lgg_mri": (["dataset.root={lgg}", "dataset.native_size=40", "dataset.val_fraction=0.4"], {"segmentation"}),
}


def model_per_registry_entry() -> list[str]:
    """For each registered model, its tiny config if it has one, else its first config."""
    picked = {}
    for choice in (c for c in choices("model") if c not in SOURCES):  # outside models: test_models_outside.py
        name = model_config(choice).name
        if name not in picked or (choice.endswith("_tiny") and not picked[name].endswith("_tiny")):
            picked[name] = choice
    assert set(picked) == set(MODELS.names()) - set(SOURCES), "every registered model has a config"
    return sorted(picked.values())


MODELS_UNDER_TEST = model_per_registry_entry()


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("matrix")
    return {"image_folder": make_image_folder(base / "if", classes=3, per_class=2),
            "hct": make_hct_lists(base / "hct", per_class=1, size=40),
            "retinopathy": make_retinopathy(base / "retina", n=6, size=40),
            "lgg": make_lgg(base / "lgg", patients=3, slices=2, size=40)}


@pytest.mark.slow
@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("model", MODELS_UNDER_TEST)
def test_cell_trains_or_exits_2_with_one_line(model, dataset, roots, tmp_path, capsys):
    extra, tasks = DATASETS[dataset]
    args = [a.format(**roots) for a in extra]
    capsys.readouterr()
    rc = main(["train", f"model={model}", f"dataset={dataset}", *args, *ONE_STEP, f"run_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    task = model_config(model).task
    if task in tasks:
        assert rc == 0, err
        assert (tmp_path / "run" / "summary.json").is_file()
    else:
        assert rc == 2 and err.strip().startswith("error: ") and len(err.strip().splitlines()) == 1, err
        assert "task=" in err  # the line says which task the data set has


def test_matrix_covers_every_registered_model():
    assert {model_config(m).name for m in MODELS_UNDER_TEST} == set(MODELS.names()) - set(SOURCES)
    assert "inception_v3_tiny" in MODELS_UNDER_TEST and "resnet18" in MODELS_UNDER_TEST
