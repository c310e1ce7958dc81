"""The device-side input pipeline: uint8 batches from the cache, transformed after the
transfer (data/device_loader.py + data/batch_transforms.py). On CPU the look-ahead runs the
same code as on a GPU minus the stream; the GPU test compares the CUDA path to the CPU one."""
import pytest
import torch
from fixtures_data import make_image_folder, make_lgg
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from hpml_bench.data import build_datasets
from hpml_bench.data.cache import CachedImages, prepare_cache
from hpml_bench.data.collate import batch_collate
from hpml_bench.data.device_loader import DeviceLoader
from hpml_bench.train.config import compose_train

CASES = {
    "segmentation": (make_lgg, ["dataset=lgg_mri", "dataset.image_size=16"], {"patients": 4, "slices": 3}),
    "classification": (make_image_folder, ["dataset=image_folder", "dataset.image_size=16", "dataset.val_dir=null"], {}),
}


def cached_splits(tmp_path, task, *extra):
    maker, args, kwargs = CASES[task]
    maker(tmp_path / "data", **kwargs)
    args = [*args, f"dataset.root={tmp_path / 'data'}", *extra]
    prepare_cache(OmegaConf.to_object(compose_train(args).dataset), task)
    return build_datasets(OmegaConf.to_object(compose_train([*args, "dataset.cache=true"]).dataset), task)


def batches(ds, device="cpu", prefetch=False, workers=0, seed=0):
    torch.manual_seed(seed)
    loader = DataLoader(ds, batch_size=4, shuffle=False, collate_fn=batch_collate, num_workers=workers)
    return [tuple(t.cpu() for t in b) for b in DeviceLoader(loader, torch.device(device), ds.batch_transform, prefetch)]


@pytest.mark.parametrize("task", CASES)
def test_uint8_batches_normalised_after_transfer_equal_the_per_sample_path(tmp_path, task):
    train, _ = cached_splits(tmp_path, task, "dataset.augment=false")
    raw = next(iter(DataLoader(train, batch_size=4, collate_fn=batch_collate)))
    assert raw[0].dtype == torch.uint8  # what crosses worker queues and the bus
    for prefetch in (False, True):
        got = batches(train, prefetch=prefetch)
        assert sum(len(b[0]) for b in got) == len(train)
        for k, (images, targets) in enumerate(got):
            for j in range(len(images)):
                ref_image, ref_target = train[4 * k + j]  # the decode path's per-sample transforms
                torch.testing.assert_close(images[j], ref_image, rtol=0, atol=1e-6)
                assert torch.equal(targets[j], ref_target) and targets.dtype == ref_target.dtype


@pytest.mark.parametrize("task", CASES)
def test_flips_are_per_sample_seeded_and_move_masks_with_images(tmp_path, task):
    train, _ = cached_splits(tmp_path, task)
    first = batches(train, seed=3)
    assert all(torch.equal(a, b) for x, y in zip(first, batches(train, prefetch=True, seed=3)) for a, b in zip(x, y))
    # workers hand out uint8 only; the coins are drawn in the main process, so the same batches
    assert all(torch.equal(a, b) for x, y in zip(first, batches(train, workers=2, seed=3)) for a, b in zip(x, y))
    flipped = []
    for k, (images, targets) in enumerate(first):
        for j in range(len(images)):
            raw_image, raw_target = _raw(train, 4 * k + j)
            ref = train.batch_transform.to_float(raw_image.unsqueeze(0))[0]
            ref_target = raw_target.long() if task == "segmentation" else raw_target
            same = torch.equal(images[j], ref) and torch.equal(targets[j], ref_target)
            mirrored = torch.equal(images[j], ref.flip(-1)) and torch.equal(
                targets[j], ref_target.flip(-1) if task == "segmentation" else ref_target)
            assert same or mirrored
            flipped.append(mirrored and not same)
    assert any(flipped) and not all(flipped)


@pytest.mark.parametrize("task", CASES)
def test_cpu_look_ahead_thread_gives_the_in_order_batches(tmp_path, task, monkeypatch):
    """The cache is read in this process; on CPU a helper thread reads and transforms the next
    batch. Same batches as in order, and the coins follow the sampler's seed and epoch and the
    batch's place in the epoch, so a mid-epoch restart sees the batches it would have seen."""
    from hpml_bench.strategies.sampler import ResumableSampler

    train, _ = cached_splits(tmp_path, task)
    assert train.in_process

    def epoch(start_batch=0, seed=7, epoch=1, shuffle=True):
        sampler = ResumableSampler(train, num_replicas=1, rank=0, shuffle=shuffle, seed=seed)
        sampler.set_epoch(epoch)
        sampler.start_index = 2 * start_batch
        loader = DataLoader(train, batch_size=2, sampler=sampler, collate_fn=batch_collate)
        return list(DeviceLoader(loader, torch.device("cpu"), train.batch_transform))

    ahead = epoch()
    with monkeypatch.context() as m:
        m.setattr(CachedImages, "in_process", False)
        in_order = epoch()
    assert len(ahead) == len(in_order) == -(-len(train) // 2)
    assert all(torch.equal(a, b) for x, y in zip(ahead, in_order) for a, b in zip(x, y))
    assert all(torch.equal(a, b) for x, y in zip(ahead[3:], epoch(start_batch=3)) for a, b in zip(x, y))
    # Another epoch, same sample order (no shuffle): only the coins can make the batches differ.
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(epoch(epoch=1, shuffle=False), epoch(epoch=2, shuffle=False)))


def test_build_loaders_reads_the_cache_in_process_whatever_num_workers(tmp_path):
    from hpml_bench.data import build_loaders
    from hpml_bench.strategies import StepSettings, build_strategy

    cached_splits(tmp_path, "classification")
    args = [*CASES["classification"][1], f"dataset.root={tmp_path / 'data'}", "dataset.cache=true",
            "dataset.num_workers=2"]
    cfg = compose_train(args)
    strategy = build_strategy(OmegaConf.to_object(cfg.strategy), StepSettings(device="cpu"))
    strategy.setup()
    train, val = build_loaders(OmegaConf.to_object(cfg.dataset), strategy, "classification", 0)
    assert train.num_workers == 0 and val.num_workers == 0  # worker processes would only add IPC
    decode = compose_train([*args[:-2], "dataset.num_workers=2"])
    train, _ = build_loaders(OmegaConf.to_object(decode.dataset), strategy, "classification", 0)
    assert train.num_workers == 2  # the decode path keeps its workers


def _raw(ds, i):
    images, targets = ds._open()
    return torch.from_numpy(images[i].copy()), torch.as_tensor(targets[i])


def test_device_loader_passes_the_loader_through():
    data = torch.utils.data.TensorDataset(torch.arange(10.0).view(10, 1), torch.arange(10))
    loader = DataLoader(data, batch_size=3)
    wrapped = DeviceLoader(loader, torch.device("cpu"), prefetch=True)
    assert len(wrapped) == 4 and wrapped.dataset is data and wrapped.num_workers == 0
    assert [b[1].tolist() for b in wrapped] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    empty = torch.utils.data.TensorDataset(torch.zeros(0, 1), torch.zeros(0))
    assert list(DeviceLoader(DataLoader(empty, batch_size=3), torch.device("cpu"), prefetch=True)) == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the CPU tests cover the same steps)")
@pytest.mark.parametrize("task", CASES)
def test_cuda_prefetch_gives_the_cpu_batches(tmp_path, task):
    train, _ = cached_splits(tmp_path, task)
    for (a, b), (c, d) in zip(batches(train, seed=5), batches(train, device="cuda", seed=5)):
        torch.testing.assert_close(c, a, rtol=0, atol=1e-5)
        assert torch.equal(d, b)
