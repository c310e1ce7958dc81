"""dataset.augment: the registered augmentations, their per-sample seeds, MixUp/CutMix against
torchvision's, and soft targets through the classification loss and accuracy."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torchvision.transforms import v2

from hpml_bench.data.augment import AUGMENTATIONS, AugmentConfig, CoinFlip
from hpml_bench.data.mix import BatchMix, SeededCutMix, SeededMixUp
from hpml_bench.data.sample_augment import SampleAugment, batch_mix
from hpml_bench.data.sample_rng import SampleKey, forked, op_seed, salt_of, uniform
from hpml_bench.errors import HpmlError
from hpml_bench.tasks import build_task
from hpml_bench.train.config import compose_train

SIZE = 12


def dataset_cfg(*overrides):
    return OmegaConf.to_object(compose_train([f"dataset.image_size={SIZE}", *overrides]).dataset)


def image_and_mask(seed=0):
    """A random image whose left-top block is bright, and the mask of that block."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 100, (3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    mask = torch.zeros(SIZE, SIZE, dtype=torch.uint8)
    mask[1:6, 2:5] = 1
    image[:, mask.bool()] = 255
    return image, mask


@pytest.mark.parametrize("name", [n for n in AUGMENTATIONS.names() if n not in ("mixup", "cutmix")])
def test_each_sample_augmentation_is_seeded_by_its_sample(name):
    augment = SampleAugment(dataset_cfg(f"dataset.augment=[{name}]", "dataset.aug.erasing_p=1"), False, True)
    image, _ = image_and_mask()
    label = torch.tensor(2)
    first, again = (augment(image, label, SampleKey(5, 0, 0).rng_seed)[0] for _ in range(2))
    assert first.shape == (3, SIZE, SIZE) and first.dtype == torch.float32
    assert torch.equal(first, again)  # same (seed, epoch, index): the same draws
    others = [augment(image, label, SampleKey(5, 0, epoch).rng_seed)[0] for epoch in range(1, 12)]
    assert any(not torch.equal(first, other) for other in others)  # other epochs draw anew
    plain = SampleAugment(dataset_cfg("dataset.augment=false"), False, True)(image, label, None)[0]
    assert any(not torch.equal(plain, other) for other in [first, *others])  # it does change images


def test_ops_leave_the_global_rng_as_they_found_it():
    cfg = dataset_cfg("dataset.augment=[random_resized_crop,randaugment,random_erasing]")
    augment = SampleAugment(cfg, False, True)
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    augment(image_and_mask()[0], torch.tensor(0), 1234)
    assert torch.equal(torch.rand(4), expected)  # forked: the loop's own stream (dropout, ...) goes on


@pytest.mark.parametrize("name", ["hflip", "pad_crop", "random_resized_crop", "random_erasing"])
def test_geometric_ops_move_masks_with_their_images(name):
    cfg = dataset_cfg(f"dataset.augment=[{name}]", "dataset.aug.erasing_p=1", "dataset.aug.crop_scale=[0.3,1]")
    augment = SampleAugment(cfg, True, True)
    image, mask = image_and_mask()
    moved = 0
    for index in range(12):
        out, out_mask = augment(image, mask, SampleKey(index, 7, 0).rng_seed)
        assert out_mask.dtype == torch.int64 and set(out_mask.unique().tolist()) <= {0, 1}
        bright = out.mean(0) > 1.5  # the 255 block, normalised
        if name == "random_erasing":  # erases image pixels only: the mask keeps its classes
            assert torch.equal(out_mask, mask.long())
            continue
        # (random_resized_crop resizes the image with antialiasing, the mask with nearest)
        agree = (bright == out_mask.bool()).float().mean()
        assert agree >= (0.9 if name == "random_resized_crop" else 1.0), (index, agree)
        moved += not torch.equal(out_mask, mask.long())
    assert moved or name == "random_erasing"


@pytest.mark.parametrize("name", ["randaugment", "trivialaugment", "autoaugment", "augmix", "mixup", "cutmix"])
def test_ops_that_cannot_move_masks_are_refused_for_segmentation(name):
    from hpml_bench.data.sample_augment import check_augment

    cfg = dataset_cfg(f"dataset.augment=[hflip,{name}]")
    with pytest.raises(HpmlError, match=f"dataset.augment: {name} (cannot move masks|mixes labels)") as info:
        check_augment(cfg, "segmentation")
    assert "for task=segmentation use hflip, pad_crop, random_erasing, random_resized_crop" in str(info.value)
    check_augment(cfg, "classification")


def test_augment_config_choices_and_mistakes():
    assert dataset_cfg().augment == ["hflip"]
    assert dataset_cfg("dataset.augment=false").augment == []
    assert OmegaConf.to_object(compose_train(["dataset=cifar10"]).dataset).augment == ["pad_crop", "hflip"]
    assert dataset_cfg("dataset.augment=[mixup,hflip]").augment == ["mixup", "hflip"]
    with pytest.raises(HpmlError, match="did you mean 'randaugment'"):
        dataset_cfg("dataset.augment=[randaugmnt]")
    with pytest.raises(HpmlError, match=r"dataset.aug.crop_scale=\[0.5, 0.2\]"):
        dataset_cfg("dataset.augment=[random_resized_crop]", "dataset.aug.crop_scale=[0.5,0.2]")
    with pytest.raises(HpmlError, match="dataset.aug.mixup_alpha"):
        AugmentConfig(mixup_alpha=0)


def test_train_rejects_a_misspelt_augmentation_in_one_line(hpml):
    r = hpml("train", "dataset.augment=[hflip,cutmx]", "trainer.epochs=1")
    assert r.rc == 2 and r.err.startswith("error: ") and "did you mean 'cutmix'" in r.err
    assert "Traceback" not in r.err


def test_batched_flip_coins_equal_the_per_sample_coins():
    augment = SampleAugment(dataset_cfg(), False, True)
    seeds = torch.tensor([SampleKey(i, 11, 3).rng_seed for i in range(64)])
    salt = salt_of("hflip#0")
    per_sample = [uniform(op_seed(int(s), salt)) < 0.5 for s in seeds]
    assert augment.flip_coins(seeds).tolist() == per_sample
    assert 10 < sum(per_sample) < 54
    flip = CoinFlip(0.5)
    image = torch.arange(4.0).view(1, 1, 4)
    assert all(torch.equal(flip((image,), op_seed(int(s), salt))[0], image.flip(-1) if c else image)
               for s, c in zip(seeds, per_sample))


def test_a_sample_key_is_its_index_everywhere():
    key = SampleKey(7, 3, 2)
    assert key == 7 and [10, 11, 12, 13, 14, 15, 16, 17][key] == 17 and np.arange(9)[key] == 7
    back = pickle.loads(pickle.dumps(key))  # to loader workers
    assert (int(back), back.seed, back.epoch, back.rng_seed) == (7, 3, 2, key.rng_seed)
    assert SampleKey(7, 3, 1).rng_seed != key.rng_seed != SampleKey(8, 3, 2).rng_seed
    assert 0 <= key.rng_seed < 2**63


def test_forked_seeds_and_restores():
    torch.manual_seed(0)
    with forked(99):
        a = torch.rand(3)
    b = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(b, torch.rand(3))
    with forked(99):
        assert torch.equal(a, torch.rand(3))


def _batch(n=8, classes=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 10, 14, generator=g), torch.randint(0, classes, (n,), generator=g)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_mixup_and_cutmix_equal_torchvision_for_the_same_rng_state(seed):
    images, labels = _batch()
    cases = [(SeededMixUp(alpha=0.4, num_classes=5), v2.MixUp(alpha=0.4, num_classes=5)),
             (SeededCutMix(alpha=1.0, num_classes=5), v2.CutMix(alpha=1.0, num_classes=5))]
    for ours, theirs in cases:
        torch.manual_seed(seed)
        ref_images, ref_targets = theirs(images, labels)
        got_images, got_targets = BatchMix([ours])(images, labels, torch.Generator().manual_seed(seed))
        assert torch.equal(got_images, ref_images) and torch.equal(got_targets, ref_targets)
        assert got_targets.shape == (8, 5) and torch.allclose(got_targets.sum(1), torch.ones(8))
        assert not torch.equal(got_images, images)
    # both listed: one per batch, chosen as v2.RandomChoice chooses
    for s in range(seed * 10, seed * 10 + 10):
        torch.manual_seed(s)
        ref = v2.RandomChoice([v2.MixUp(alpha=0.4, num_classes=5), v2.CutMix(alpha=1.0, num_classes=5)])(images, labels)
        got = BatchMix([c[0] for c in cases])(images, labels, torch.Generator().manual_seed(s))
        assert all(torch.equal(a, b) for a, b in zip(got, ref))


def test_batch_mix_comes_from_the_config_and_refuses_masks():
    cfg = dataset_cfg("dataset.augment=[hflip,mixup,cutmix]", "dataset.num_classes=5")
    mix = batch_mix(cfg, "classification")
    assert [type(t) for t in mix.transforms] == [SeededMixUp, SeededCutMix] and mix.transforms[0].num_classes == 5
    assert batch_mix(dataset_cfg(), "classification") is None
    with pytest.raises(HpmlError, match="task=segmentation"):
        batch_mix(cfg, "segmentation")


def test_soft_targets_through_the_classification_loss_and_accuracy():
    task = build_task("classification", 4)
    logits = torch.tensor([[2.0, 0.5, 0.1, 0.0], [0.0, 0.2, 3.0, 0.1], [1.0, 0.0, 0.0, 4.0]])
    labels = torch.tensor([0, 1, 3])
    one_hot = nn.functional.one_hot(labels, 4).float()
    assert torch.allclose(task.loss(logits, one_hot), task.loss(logits, labels))
    soft = 0.7 * one_hot + 0.3 * one_hot.roll(1, 0)
    expected = -(soft * logits.log_softmax(1)).sum(1).mean()
    assert torch.allclose(task.loss(logits, soft), expected)
    metrics = task.metrics()
    metrics.update(logits, soft)  # argmax of the mixed targets: [0, 1, 3]; predictions [0, 2, 3]
    assert metrics.compute()["acc"].item() == pytest.approx(2 / 3)
    metrics.reset()
    metrics.update(logits, labels)
    assert metrics.compute()["acc"].item() == pytest.approx(2 / 3)
