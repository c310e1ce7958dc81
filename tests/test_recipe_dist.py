"""The recipe levers under DDP (2 CPU processes over gloo): the weight EMA, the class-balanced
sampler and label smoothing give a 2-rank run the EMA weights of one process with twice the batch."""
import json

import pandas as pd
import pytest
import torch
from test_strategies_dist import train

pytestmark = pytest.mark.dist

LEVERS = ["trainer.ema_decay=0.8", "dataset.sampler=balanced", "loss.label_smoothing=0.1", "dataset.num_train=120"]


def test_ddp_ema_and_balanced_sampler_match_one_process_with_twice_the_batch(hpml, tmp_path):
    train(hpml, "single", *LEVERS, "dataset.batch_size=32")
    train(hpml, "ddp", *LEVERS, "strategy=ddp", "strategy.nproc_per_node=2", "dataset.batch_size=16")
    runs = tmp_path / "runs"
    single, ddp = (torch.load(runs / n / "checkpoints" / "ema.pt", weights_only=True) for n in ("single", "ddp"))
    assert single["model"].keys() == ddp["model"].keys()
    for key in single["model"]:
        torch.testing.assert_close(single["model"][key], ddp["model"][key], rtol=0, atol=1e-5, msg=key)
    a, b = (pd.read_csv(runs / n / "epochs.csv") for n in ("single", "ddp"))
    # both ranks validate their half of the data with their (identical) average; the scores add up
    assert list(a["val_ema_acc"]) == pytest.approx(list(b["val_ema_acc"]), abs=1e-6)
    assert json.loads((runs / "ddp" / "summary.json").read_text())["world_size"] == 2
