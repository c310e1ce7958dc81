"""The user's own config folder (./conf, --config-dir, $HPML_CONFIG_DIR) searched before hpml's,
unknown group choices refused, and `hpml init`."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import TINY

from hpml_bench.config.search_path import HPML_CONF

USER_FILES = {
    "model/mynet.yaml": "# my ResNet-34\ndefaults:\n  - resnet_schema\n  - _self_\ndepth: 34\n",
    "model/tinynet.yaml": "# my MLP\ndefaults:\n  - mlp\n  - _self_\n",
    "dataset/mydata.yaml": "# my shapes\ndefaults:\n  - shapes\n  - _self_\nnum_train: 48\n",
    # shadows hpml's own optimizer/adamw.yaml
    "optimizer/adamw.yaml": "# my AdamW\ndefaults:\n  - schema\n  - _self_\nname: adamw\nlr: 0.123\n",
    "experiment/mine.yaml": ("# @package _global_\n# my recipe\ndefaults:\n  - override /model: mynet\n"
                             "  - override /dataset: mydata\ntrainer:\n  epochs: 7\n"),
    "slurm/mycluster.yaml": "# my cluster\nname: mycluster\njob_name: mine\nmem: 3G\nout_dir: jobs\n",
    "bench/mybench.yaml": ("# my bench\ndefaults:\n  - schema\n  - _self_\nname: mybench\n"
                           "smoke:\n  base: [experiment=mine, model=mlp, dataset=synthetic, dataset.image_size=16,\n"
                           "         dataset.num_train=32, dataset.num_val=16, dataset.batch_size=16, trainer.epochs=1,\n"
                           "         trainer.warmup_epochs=0, trainer.checkpoint_every=0, device=cpu]\n"
                           "  include:\n    - {optimizer.lr: 0.01}\n"),
}


def write_conf(folder: Path) -> Path:
    for name, text in USER_FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_checkout_reads_the_top_level_conf():
    assert HPML_CONF == Path(__file__).resolve().parent.parent / "conf"
    assert (HPML_CONF / "train.yaml").is_file() and (HPML_CONF / "__init__.py").is_file()


def test_user_folder_adds_choices_and_shadows_hpmls_own(hpml, tmp_path):
    write_conf(tmp_path / "conf")
    result = hpml("train", "--cfg", "job", "experiment=mine")
    assert result.rc == 0, result.err
    assert "depth: 34" in result.out and "num_train: 48" in result.out and "epochs: 7" in result.out
    assert "lr: 0.123" in result.out  # the user's optimizer/adamw.yaml wins over hpml's
    # The typed config goes through every check, with the user's choices by name.
    from hpml_bench.train.config import compose_train, to_train_config

    cfg = to_train_config(compose_train(["model=mynet", "dataset=mydata"]))
    assert (cfg.model.depth, cfg.dataset.num_train, cfg.optimizer.lr) == (34, 48, 0.123)


def test_config_dir_flag_and_env_from_another_folder(hpml, tmp_path, monkeypatch):
    conf = write_conf(tmp_path / "elsewhere")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    for args in (["--config-dir", str(conf)], [f"--config-dir={conf}"]):
        result = hpml("train", *args, "--cfg", "job", "model=mynet")
        assert result.rc == 0 and "depth: 34" in result.out, result.err
    assert "HPML_CONFIG_DIR" not in __import__("os").environ  # put back after the command
    monkeypatch.setenv("HPML_CONFIG_DIR", str(conf))
    assert hpml("train", "--cfg", "job", "model=mynet").rc == 0
    monkeypatch.setenv("HPML_CONFIG_DIR", str(tmp_path / "missing"))
    result = hpml("list", "models")
    assert result.rc == 2 and "does not exist" in result.err and len(result.err.splitlines()) == 1


def test_a_user_train_yaml_is_refused_not_silently_used(hpml, tmp_path):
    write_conf(tmp_path / "conf")
    (tmp_path / "conf" / "train.yaml").write_text("defaults: []\n")
    result = hpml("train", "--cfg", "job")
    assert result.rc == 2 and "would replace hpml's own train.yaml" in result.err, result.err


@pytest.mark.parametrize("args, message", [
    (["train", "experiment=mnie"], "unknown experiment 'mnie' (did you mean 'mine'?)"),
    (["train", "experiment=hct_dp", "--cfg", "job"], "unknown experiment 'hct_dp' (did you mean 'hct_ddp'?)"),
    (["train", "-m", "model=mynet,mynte"], "unknown model 'mynte' (did you mean 'mynet'?)"),
    (["train", "dataset=mydta"], "unknown dataset 'mydta' (did you mean 'mydata'?)"),
    (["bench", "bench=mybnch"], "unknown bench 'mybnch' (did you mean 'mybench'?)"),
    (["slurm", "slurm=mycluste"], "unknown slurm 'mycluste' (did you mean 'mycluster'?)"),
])
def test_unknown_choices_are_refused_with_the_closest_name(hpml, tmp_path, args, message):
    write_conf(tmp_path / "conf")
    result = hpml(*args)
    assert result.rc == 2 and message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not (tmp_path / "runs").exists()


def test_hydra_itself_refuses_an_unknown_experiment():
    """The defaults list no longer makes experiment optional: even past hpml's own check
    (e.g. a sweep Hydra expands), a missing recipe fails instead of training the default."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import MissingConfigException

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(HPML_CONF), version_base=None):
        with pytest.raises(MissingConfigException):
            compose("train", overrides=["experiment=nope"])


def test_list_and_help_show_the_users_choices(hpml, tmp_path):
    write_conf(tmp_path / "conf")
    models = hpml("list", "models")
    assert models.rc == 0, models.err
    row = next(line for line in models.out.splitlines() if "mynet" in line)
    assert "(yours)" in row and "21,797,672" in row  # ResNet-34's parameter count, built on the meta device
    assert "resnet18" in models.out and str(tmp_path / "conf") in models.out
    for what, name in (("experiments", "mine"), ("datasets", "mydata"), ("slurm", "mycluster"), ("benches", "mybench")):
        listed = hpml("list", what)
        assert listed.rc == 0 and re.search(rf"{name}\s+.*\(yours\)", listed.out), (what, listed.out)
    help_text = hpml("train", "--help").out
    assert re.search(r"^model: .*\bmynet\b", help_text, re.M) and re.search(r"^experiment: .*\bmine\b", help_text, re.M)
    assert help_text.index(str(tmp_path / "conf")) < help_text.index(str(HPML_CONF))  # searched first


def test_slurm_script_carries_the_folder(hpml, tmp_path):
    write_conf(tmp_path / "conf")
    result = hpml("slurm", "slurm=mycluster", "model=mynet", "dataset=mydata")
    assert result.rc == 0, result.err
    script = tmp_path / result.out.strip().splitlines()[-1]
    assert script.parent == tmp_path / "jobs"  # the user's preset chose out_dir
    text = script.read_text()
    assert "#SBATCH --job-name=mine" in text and "#SBATCH --mem=3G" in text
    assert f"train --config-dir {tmp_path / 'conf'} model=mynet dataset=mydata" in text


@pytest.mark.slow
def test_bench_cells_use_the_users_folder_from_another_working_directory(hpml, tmp_path, monkeypatch):
    conf = write_conf(tmp_path / "conf")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    result = hpml("bench", "--config-dir", str(conf), "bench=mybench", "bench.scale=smoke")
    assert result.rc == 0, result.out + result.err
    cell = tmp_path / "work/runs/bench/mybench-smoke/cells/optimizer.lr-0.01/rep0"
    summary = json.loads((cell / "summary.json").read_text())
    assert summary  # the cell ran to the end
    resolved = (cell / "config.yaml").read_text()
    assert "epochs: 7" not in resolved and "epochs: 1" in resolved  # the bench's base over the user's recipe
    log = next((tmp_path / "work/runs/bench/mybench-smoke/logs").glob("*.log")).read_text()
    assert f"--config-dir {conf}" in log.splitlines()[0]


def test_init_writes_a_project_that_composes_and_refuses_to_overwrite(hpml, tmp_path):
    result = hpml("init", "proj")
    assert result.rc == 0, result.err
    proj = tmp_path / "proj"
    for name in ("conf/model/mynet.yaml", "conf/dataset/mydata.yaml", "conf/experiment/mine.yaml",
                 "conf/bench/mybench.yaml", "mynet.py"):
        assert (proj / name).is_file(), name
    assert "hpml train experiment=mine" in result.out
    # The generated images are a real ImageFolder tree with the classes the data set declares.
    from torchvision.datasets import ImageFolder

    train = ImageFolder(proj / "data/train")
    assert train.classes == ["circle", "square"] and len(train) == 48 and train[0][0].size == (32, 32)
    # The starter network builds with the data set's classes and gives one logit per class.
    import torch

    sys.path.insert(0, str(proj))
    try:
        from mynet import Net
    finally:
        sys.path.remove(str(proj))
        sys.modules.pop("mynet", None)
    assert Net(num_classes=2, in_channels=3)(torch.zeros(4, 3, 32, 32)).shape == (4, 2)
    # A second init changes nothing and says so in one line.
    before = (proj / "conf/dataset/mydata.yaml").read_text()
    (proj / "conf/dataset/mydata.yaml").write_text(before + "# mine now\n")
    again = hpml("init", "proj")
    assert again.rc == 2 and "already exists" in again.err and len(again.err.strip().splitlines()) == 1
    assert (proj / "conf/dataset/mydata.yaml").read_text().endswith("# mine now\n")
    # From the project folder its data set, recipe and bench compose (model=resnet18 stands in for
    # model=mynet, which needs the model=custom source).
    import os

    os.chdir(proj)
    composed = hpml("train", "--cfg", "job", "experiment=mine", "model=resnet18")
    assert composed.rc == 0, composed.err
    assert re.search(r"name: image_folder\n  root: data\n  num_classes: 2", composed.out)
    assert "epochs: 3" in composed.out and "lr: 0.003" in composed.out
    from hpml_bench.bench.config import load_bench
    from hpml_bench.bench.runner import plan

    bench, train_args = load_bench(["bench=mybench", "bench.scale=smoke", "model=resnet18"])
    cells, _ = plan(bench, train_args)
    assert [c.status for c in cells] == ["ready", "ready"], [c.reason for c in cells]
    assert [c.values for c in cells] == [{"strategy": "single"}, {"strategy": "ddp", "strategy.nproc_per_node": 2}]


@pytest.mark.slow
def test_init_then_one_command_trains_the_users_own_network(hpml, tmp_path, monkeypatch):
    assert hpml("init", "proj").rc == 0
    monkeypatch.chdir(tmp_path / "proj")
    result = hpml("train", "experiment=mine", "trainer.epochs=1", "trainer.progress=never", "run_dir=runs/first")
    assert result.rc == 0, result.err
    source = json.loads((tmp_path / "proj/runs/first/model_source.json").read_text())
    assert source["file"] == str(tmp_path / "proj/mynet.py") and source["target"] == "mynet:Net"


def test_init_refuses_hpmls_own_checkout(hpml):
    result = hpml("init", str(HPML_CONF.parent))
    assert result.rc == 2 and "hpml's own checkout" in result.err


def test_a_run_recomposes_from_its_own_config_folder_anywhere(hpml, tmp_path, monkeypatch):
    """export/predict/cam (load_config) and `train resume=` find the user's groups of a run
    started elsewhere; a folder that is gone is named in one line."""
    conf = write_conf(tmp_path / "project/conf")
    monkeypatch.chdir(tmp_path / "project")
    run = tmp_path / "project/runs/a"
    first = hpml("train", "model=tinynet", "dataset=mydata", *TINY, "trainer.epochs=1", f"run_dir={run}")
    assert first.rc == 0, first.err
    assert (run / "config_dir.txt").read_text().strip() == str(conf)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    from hpml_bench.train.trained_run import load_config

    cfg = load_config(run)
    assert cfg.model.name == "mlp" and cfg.dataset.num_train == 64
    resumed = hpml("train", f"resume={run}", "trainer.epochs=2")
    assert resumed.rc == 0, resumed.err
    assert len((run / "epochs.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
    conf.rename(tmp_path / "moved")
    result = hpml("train", f"resume={run}", "trainer.epochs=3")
    assert result.rc == 2 and "which is gone" in result.err, result.err
