"""resume=<run> with a config that cannot continue it: one line naming what differs, exit 2,
before anything trains, the run folder as it was; the overrides a new strategy does not have are
left behind; the optimizer state by parameter name loads into any split of the model."""
from __future__ import annotations

import contextlib
import shutil

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

import hpml_bench.train.resume as resume_module
from hpml_bench.cli.main import main
from hpml_bench.cli.train import with_resumed_overrides
from hpml_bench.strategies.optim_state import by_name, load_by_name, merged
from tests.conftest import TINY

RUN = [*TINY, "model=mlp", "trainer.epochs=1", "run_dir=run"]  # 4 classes, 16 px, hidden [256, 128, 64]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished 1-epoch run, copied into each test's folder."""
    root = tmp_path_factory.mktemp("trained")
    with contextlib.chdir(root):  # the run folder is relative to the working folder
        assert main(["train", *RUN]) == 0
    return root / "run"


def snapshot(folder):
    return {p.relative_to(folder): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("change, says", [
    (["model=resnet18"], "(model.name mlp there, resnet here; layer blocks.0.1.weight is only there)"),
    (["model.hidden=[128,64,32]"], "(model.hidden [256, 128, 64] there, [128, 64, 32] here; "
                                   "layer blocks.0.1.weight is [256, 768] there, [128, 768] here)"),
    (["dataset.num_classes=3"], "(model.num_classes 4 there, 3 here; layer head.weight is [4, 64] there, [3, 64] here)"),
    (["dataset.image_size=32"], "(dataset.image_size 16 there, 32 here; layer blocks.0.1.weight is [256, 768] there, "
                                "[256, 3072] here)"),
])
@pytest.mark.parametrize("where", ["before the run", "in the run"])
def test_a_config_that_cannot_continue_the_run_is_one_line_and_leaves_it(hpml, tmp_path, monkeypatch, trained,
                                                                         change, says, where):
    shutil.copytree(trained, tmp_path / "run")
    before = snapshot(tmp_path / "run")
    if where == "in the run":  # the run's own check (requeued jobs, sweeps): the same line
        monkeypatch.setattr(resume_module, "check_resumable", lambda *a: None)
    r = hpml("train", "resume=run", "trainer.epochs=2", *change)
    assert r.rc == 2 and r.err.startswith("error: resume=run: its checkpoint does not fit the model this config "
                                          f"builds {says}; continue it with the run's own model"), r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert snapshot(tmp_path / "run") == before
    if change == ["model=resnet18"] and where == "in the run":
        assert hpml("train", "resume=run", "trainer.epochs=2").rc == 0  # as it was, it goes on


def test_a_new_strategy_leaves_behind_the_keys_it_does_not_have(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    saved = ["model=mlp", "strategy=ddp", "strategy.nproc_per_node=2", "strategy.bucket_cap_mb=10"]
    (run / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(saved)))
    single = with_resumed_overrides([f"resume={run}", "strategy=single"])
    assert single == ["model=mlp", f"resume={run}", "strategy=single"]
    assert (f"hpml: resume={run} with strategy=single: not carried over from the run: strategy.nproc_per_node=2 "
            "strategy.bucket_cap_mb=10") in capsys.readouterr().err
    fsdp = with_resumed_overrides([f"resume={run}", "strategy=fsdp"])  # fsdp has nproc_per_node, not buckets
    assert fsdp == ["model=mlp", "strategy.nproc_per_node=2", f"resume={run}", "strategy=fsdp"]
    same = with_resumed_overrides([f"resume={run}", "strategy=ddp", "strategy.nproc_per_node=4"])
    assert same == ["model=mlp", "strategy.bucket_cap_mb=10", f"resume={run}", "strategy=ddp", "strategy.nproc_per_node=4"]


def test_optimizer_state_by_name_loads_into_any_split_of_the_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    whole = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(5, 4)).sum().backward()
    whole.step()
    saved = by_name(whole, model)
    assert list(saved["state"]) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    # two "stages", each with its own optimizer (a pipeline's ranks), written and merged as the pipeline does
    stages = [torch.optim.AdamW(model[0].parameters(), lr=0.1), torch.optim.AdamW(model[2].parameters(), lr=0.1)]
    for stage in stages:
        load_by_name(stage, model, saved)
    again = merged(by_name(stage, model) for stage in stages)
    assert again["param_groups"][0]["params"] == saved["param_groups"][0]["params"]
    for name, state in saved["state"].items():
        for key in state:
            assert torch.equal(again["state"][name][key], state[key]), (name, key)
