"""benchmarks/digits_recipe.py's arithmetic on made-up run folders: the target is the plain runs'
median final accuracy, the recipe's accuracy its EMA's, time to target the cumulative train +
validation time of the first epoch at or above it, and every experiment it names composes."""
import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from hpml_bench.train.config import compose_train, to_train_config

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("digits_recipe", ROOT / "benchmarks" / "digits_recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(folder: Path, acc, ema=None, run_s=2.0, val_s=1.0):
    folder.mkdir(parents=True)
    table = {"epoch": range(1, len(acc) + 1), "run_s": [run_s] * len(acc), "val_s": [val_s] * len(acc), "val_acc": acc}
    if ema is not None:
        table["val_ema_acc"] = ema
    pd.DataFrame(table).to_csv(folder / "epochs.csv", index=False)


def test_target_and_time_to_target(tmp_path):
    script = _script()
    runs = tmp_path / "runs"
    for seed, final in enumerate([0.90, 0.92, 0.91]):  # plain: 10 epochs of 3 s, target = median 0.91
        _run(runs / script.folder_name("plain", seed), [0.5] * 9 + [final])
    # the recipe's EMA reaches 0.91 at epochs 3, 4, 5 (its raw weights earlier: not what counts)
    for seed, hit in enumerate([3, 4, 5]):
        ema = [0.5] * (hit - 1) + [0.95] * (6 - hit + 1)
        _run(runs / script.folder_name("recipe", seed), [0.99] * 6, ema=ema, val_s=2.0)
    result = script.analyze(tmp_path, ["plain", "recipe"], [0, 1, 2])
    assert result["target"] == pytest.approx(0.91) and result["plain_wall_s"] == pytest.approx(30.0)
    recipe = result["variants"]["recipe"]
    assert [r["epochs_to_target"] for r in recipe["runs"]] == [3, 4, 5]
    assert recipe["median_time_to_target_s"] == pytest.approx(16.0)  # 4 epochs x (2 + 2) s
    assert recipe["ratio_to_plain"] == pytest.approx([12 / 30, 16 / 30, 20 / 30])  # paired with each seed's plain
    assert recipe["median_ratio_to_plain"] == pytest.approx(16 / 30)
    assert recipe["median_train_to_target_s"] == pytest.approx(8.0)
    assert recipe["median_train_ratio_to_plain"] == pytest.approx(8 / 20)
    assert recipe["median_final_acc"] == pytest.approx(0.95)
    assert "| recipe | 0.9500 (0.9500-0.9500) | 0.9900 (0.9900-0.9900) | 4 (3-5) (6) | 16.0 (12.0-20.0) | 0.53" \
        in result["table"]
    plain = result["variants"]["plain"]
    assert [r["epochs_to_target"] for r in plain["runs"]] == [None, 10, 10]  # seed 0 stops at 0.90
    assert "not reached in 1 of 3" in result["table"]


def test_the_experiments_it_runs_compose():
    script = _script()
    for overrides in {**script.MAIN, **script.ABLATIONS}.values():
        to_train_config(compose_train([*overrides, *script.COMMON, "trainer.seed=1"]))


def test_each_seed_runs_every_variant_in_another_order():
    script = _script()
    names = list({**script.MAIN, **script.ABLATIONS})
    orders = [script.run_order(names, k) for k in range(3)]
    assert all(sorted(o) == sorted(names) for o in orders)
    assert len({o[0] for o in orders}) == 3 and len({o.index("plain") for o in orders}) == 3
