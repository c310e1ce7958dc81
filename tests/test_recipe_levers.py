"""The recipe levers, each against its reference: label smoothing and class weights against
F.cross_entropy and scikit-learn, the balanced sampler's class counts (one process and sharded),
the weight EMA against torch's AveragedModel and timm's ModelEmaV3, no weight decay on norm and
bias parameters against timm's rule, the one-cycle and step schedules against torch's schedulers,
and test-time augmentation against plain evaluation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from hpml_bench.data import build_datasets
from hpml_bench.data.labels import class_counts, class_labels
from hpml_bench.errors import HpmlError
from hpml_bench.eval.tta import with_tta
from hpml_bench.strategies import StepSettings, build_strategy
from hpml_bench.strategies.base import StrategyConfig
from hpml_bench.strategies.ema import WeightEma, ema_weights
from hpml_bench.strategies.sampler import BalancedSampler
from hpml_bench.tasks import build_task
from hpml_bench.tasks.base import LossConfig
from hpml_bench.train.config import compose_train, to_train_config
from hpml_bench.train.optim import OptimizerConfig, SchedulerConfig, build_optimizer, build_scheduler
from hpml_bench.train.run import class_weights


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))


# -- loss ------------------------------------------------------------------------------------
def test_label_smoothed_weighted_loss_equals_torch_cross_entropy():
    logits, targets = torch.randn(16, 5), torch.randint(0, 5, (16,))
    weights = torch.tensor([0.5, 1.0, 2.0, 1.0, 3.0])
    task = build_task("classification", 5, LossConfig(label_smoothing=0.1), weights)
    expected = F.cross_entropy(logits, targets, weight=weights, label_smoothing=0.1)
    assert torch.equal(task.loss(logits, targets), expected)
    assert not torch.equal(task.loss(logits, targets), F.cross_entropy(logits, targets))  # the levers act
    # validation scores plain cross-entropy, comparable across recipes
    assert torch.equal(task.eval_loss(logits, targets), F.cross_entropy(logits, targets))
    seg = build_task("segmentation", 3, LossConfig(label_smoothing=0.2), weights[:3])
    maps, masks = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    assert torch.equal(seg.loss(maps, masks), F.cross_entropy(maps, masks, weight=weights[:3], label_smoothing=0.2))


def _skewed_csv(root, counts=(12, 6, 2)) -> None:
    rows = ["path,label"]
    rng = np.random.default_rng(0)
    for label, n in enumerate(counts):
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / f"{label}_{i}.png")
            rows.append(f"{label}_{i}.png,{label}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    (root / "val.csv").write_text("\n".join(rows[:1] + rows[1::4]) + "\n")


def test_class_weights_auto_from_a_skewed_csv_match_scikit_learn(tmp_path):
    from sklearn.utils.class_weight import compute_class_weight

    _skewed_csv(tmp_path)
    cfg = to_train_config(compose_train(["dataset=csv_images", f"dataset.root={tmp_path}", "dataset.train_csv=train.csv",
                                         "dataset.val_csv=val.csv", "dataset.path_column=path", "dataset.label_column=label",
                                         "dataset.num_classes=3", "dataset.image_size=8",
                                         "model=mlp", "loss.class_weights=auto"]))
    train, _ = build_datasets(cfg.dataset, "classification")
    labels = class_labels(train)
    assert labels.tolist() == [0] * 12 + [1] * 6 + [2] * 2
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels.numpy())
    np.testing.assert_allclose(class_weights(cfg, train).numpy(), expected, rtol=1e-6)
    assert class_counts(train, 4).tolist() == [12, 6, 2, 0]
    given = to_train_config(compose_train(["model=mlp", "loss.class_weights=[1,2,3,4]"]))
    assert class_weights(given, train).tolist() == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("override, fix", [
    ("loss.class_weights=[1,2]", "give one per class"),
    ("loss.class_weights=balanced", "use null, auto or a list"),
    ("loss.label_smoothing=1.5", "[0, 1)"),
    ("dataset.sampler=uniform", "use one of random, balanced"),
])
def test_loss_and_sampler_mistakes_are_one_line(override, fix):
    with pytest.raises(HpmlError, match=fix.replace("[", r"\[").replace(")", r"\)")):
        to_train_config(compose_train(["model=mlp", override]))


def test_class_weights_auto_is_refused_for_segmentation():
    with pytest.raises(HpmlError, match="for segmentation give a list of 2 weights"):
        to_train_config(compose_train(["model=unet_tiny", "loss.class_weights=auto"]))


# -- the balanced sampler ----------------------------------------------------------------------
def test_balanced_sampler_draws_classes_equally_and_shards_like_one_process():
    labels = torch.tensor([0] * 900 + [1] * 90 + [2] * 9)  # 999: three ranks split it without padding
    data = list(range(len(labels)))
    one = BalancedSampler(data, labels, num_replicas=1, rank=0, seed=3)
    counts = torch.zeros(3)
    for epoch in range(5):
        one.set_epoch(epoch)
        drawn = list(one)
        assert len(drawn) == len(labels) == len(one)
        counts += torch.bincount(labels[drawn], minlength=3)
    share = counts / counts.sum()
    assert (share - 1 / 3).abs().max() < 0.03, share  # ~5,000 draws: a third each (vs 90/9/1 % plain)
    # sharded over 3 ranks (DDP): together exactly the one-process draw of the epoch, interleaved
    ranks = [BalancedSampler(data, labels, num_replicas=3, rank=r, seed=3) for r in range(3)]
    for sampler in [one, *ranks]:
        sampler.set_epoch(7)
    parts = [list(s) for s in ranks]
    assert [len(p) for p in parts] == [333] * 3
    assert [parts[i % 3][i // 3] for i in range(999)] == list(one)
    ranks[0].start_index = 100  # a mid-epoch resume reads the rest of the same epoch
    assert list(ranks[0]) == parts[0][100:] and len(ranks[0]) == 233
    ranks[0].set_epoch(8)
    assert list(ranks[0]) != parts[0][100:]  # a new epoch, a new draw


def test_balanced_sampler_keys_give_each_draw_its_own_repeatable_augmentation():
    from hpml_bench.data.sample_rng import SampleKey

    labels = torch.tensor([0] * 20 + [1] * 2)
    one = BalancedSampler(list(range(22)), labels, num_replicas=1, rank=0, seed=5)
    keys = list(one)
    assert all(isinstance(k, SampleKey) for k in keys)
    seeds = [(int(k), k.seed) for k in keys]
    assert len({s for _, s in seeds}) == len(keys)  # the rare class's repeats: distinct draws
    one.start_index = 7
    assert [(int(k), k.seed) for k in one] == seeds[7:]  # a resumed epoch: the same keys


# -- EMA ------------------------------------------------------------------------------------
def _train_steps(model, steps, update):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(8, 1, 6, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        update(model)


def _same_floats(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_ema_without_warmup_equals_averaged_model():
    model = _net()
    ema = WeightEma(model, 0.9, warmup=False)
    reference = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)

    def both(m):
        ema.update(m)
        reference.update_parameters(m)

    _train_steps(model, 12, both)
    _same_floats(ema.module.state_dict(), reference.module.state_dict())
    assert not torch.equal(ema.module[0].weight, model[0].weight)  # an average, not a copy
    assert ema_weights(ema.state_dict()).keys() == model.state_dict().keys()


def test_ema_warmup_equals_timm_model_ema_v3():
    from timm.utils.model_ema import ModelEmaV3

    model = _net()
    ema = WeightEma(model, 0.999, warmup=True)
    reference = ModelEmaV3(model, decay=0.999, use_warmup=True, warmup_power=0.75)
    step = [0]

    def both(m):
        step[0] += 1
        ema.update(m)
        reference.update(m, step=step[0])

    _train_steps(model, 12, both)
    _same_floats(ema.module.state_dict(), reference.module.state_dict())
    assert ema.decay_at(0) == 0.0 and ema.decay_at(11) < 0.9 and ema.decay_at(10**6) == 0.999


def test_strategy_updates_the_ema_after_each_optimizer_step_only():
    strategy = build_strategy(StrategyConfig(), StepSettings(device="cpu"))
    strategy.setup()
    model = _net()
    reference = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.5), use_buffers=True)
    strategy.prepare(model, lambda m: torch.optim.SGD(m.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                     make_ema=lambda placed: WeightEma(placed, 0.5, warmup=False))
    gen = torch.Generator().manual_seed(2)
    for i in range(6):  # gradient accumulation over 2 batches: 3 optimizer steps
        batch = torch.randn(4, 1, 6, 6, generator=gen), torch.randint(0, 3, (4,), generator=gen)
        strategy.train_step(batch, step_optimizer=i % 2 == 1, loss_scale=0.5)
        if i % 2 == 1:
            reference.update_parameters(strategy.unwrapped())
    assert int(strategy.ema.averaged.n_averaged) == 3
    _same_floats(strategy.ema.module.state_dict(), reference.module.state_dict())
    raw = strategy.eval_step(batch)
    averaged = strategy.eval_step(batch, averaged=True)
    torch.testing.assert_close(averaged.logits, reference.module.eval()(batch[0]))
    assert not torch.equal(raw.logits, averaged.logits)


@pytest.mark.parametrize("strategy", ["fsdp", "pipe"])
def test_ema_is_refused_where_ranks_hold_parts_of_the_model(strategy):
    from hpml_bench.strategies import STRATEGIES

    cfg = to_train_config(compose_train(["model=mlp", f"strategy={strategy}", "trainer.ema_decay=0.99"]))
    with pytest.raises(HpmlError, match=f"strategy=single, dp or ddp, not {strategy}"):
        STRATEGIES.get(strategy).preflight(cfg, 2)


# -- optimizer and schedules -------------------------------------------------------------------
def test_no_decay_on_norm_and_bias_matches_timm_groups():
    from timm.optim import param_groups_weight_decay

    from hpml_bench.train.config import build_model

    model = build_model("resnet18", num_classes=10)
    cfg = OptimizerConfig(name="sgd", lr=0.1, weight_decay=5e-4, no_decay_norm_bias=True)
    groups = build_optimizer(cfg, model).param_groups
    reference = param_groups_weight_decay(model, 5e-4)
    as_sets = lambda gs: {(g["weight_decay"], frozenset(map(id, g["params"]))) for g in gs}  # noqa: E731
    assert as_sets(groups) == as_sets(reference)
    assert all(g["lr"] == 0.1 for g in groups)
    scaled = build_optimizer(OptimizerConfig(name="sgd", lr=0.1, weight_decay=5e-4, no_decay_norm_bias=True,
                                             backbone_lr_scale=0.1), model).param_groups
    assert sorted((g["lr"], g["weight_decay"]) for g in scaled) == [(0.1 * 0.1, 0.0), (0.1 * 0.1, 5e-4),
                                                                    (0.1, 0.0), (0.1, 5e-4)]


def _lrs(scheduler, steps):
    lrs = []
    for _ in range(steps):
        lrs.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return lrs


def _opt(lr=0.4):
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def test_onecycle_matches_torch_one_cycle_lr():
    ours = build_scheduler(SchedulerConfig(name="onecycle", warmup_epochs=2, div_factor=25, final_div_factor=1e4),
                           _opt(), steps_per_epoch=5, epochs=8)
    torch_one = torch.optim.lr_scheduler.OneCycleLR(_opt(), max_lr=0.4, total_steps=40, pct_start=10 / 40,
                                                    anneal_strategy="cos", cycle_momentum=False)
    np.testing.assert_allclose(_lrs(ours, 40), _lrs(torch_one, 40), rtol=1e-9, atol=1e-12)


def test_step_decay_matches_multistep_lr():
    ours = build_scheduler(SchedulerConfig(name="step", milestones=[2, 5], gamma=0.1), _opt(), steps_per_epoch=4, epochs=7)
    reference = torch.optim.lr_scheduler.MultiStepLR(_opt(), milestones=[8, 20], gamma=0.1)
    np.testing.assert_allclose(_lrs(ours, 28), _lrs(reference, 28), rtol=1e-12)


def test_onecycle_needs_a_rising_phase():
    with pytest.raises(HpmlError, match="warmup_epochs > 0"):
        to_train_config(compose_train(["model=mlp", "scheduler=onecycle", "scheduler.warmup_epochs=0"]))


# -- test-time augmentation --------------------------------------------------------------------
def test_flip_tta_on_mirror_symmetric_images_equals_plain_eval():
    model = _net().eval()
    task = build_task("classification", 3)
    x = torch.randn(5, 1, 6, 6)
    x = x + x.flip(-1)  # mirror-symmetric
    plain = model(x)
    flipped = with_tta(model, "flip", task)(x)
    torch.testing.assert_close(flipped, plain.log_softmax(1))  # the same prediction and loss
    torch.testing.assert_close(F.cross_entropy(flipped, torch.tensor([0, 1, 2, 0, 1])),
                               F.cross_entropy(plain, torch.tensor([0, 1, 2, 0, 1])))
    asymmetric = torch.randn(5, 1, 6, 6)
    assert not torch.allclose(with_tta(model, "flip", task)(asymmetric), model(asymmetric).log_softmax(1))


def test_multicrop_tta_on_constant_images_equals_plain_eval():
    model, task = _net().eval(), build_task("classification", 3)
    x = torch.full((2, 1, 8, 8), 0.7)
    x[1] = -0.3
    torch.testing.assert_close(with_tta(model, "multicrop", task)(x), model(x).log_softmax(1), rtol=1e-5, atol=1e-5)


def test_flip_tta_for_segmentation_mirrors_the_maps_back():
    conv = nn.Conv2d(1, 2, 1).eval()  # pointwise: mirroring in = mirroring out
    task = build_task("segmentation", 2)
    x = torch.randn(2, 1, 5, 7)
    torch.testing.assert_close(with_tta(conv, "flip", task)(x), conv(x).log_softmax(1))
    with pytest.raises(HpmlError, match="tta=multicrop scores crops of whole images"):
        with_tta(conv, "multicrop", task)
    with pytest.raises(HpmlError, match="unknown tta 'flips'"):
        with_tta(conv, "flips", task)
