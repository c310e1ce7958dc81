"""FLOPs per sample, achieved TFLOP/s and MFU: the count against torchvision's published
figures, the peak table, the numbers a run writes, and trainer.compile's modes."""
import json

import pandas as pd
import pytest
import torch
import torchvision
from conftest import TINY

from hpml_bench.errors import HpmlError
from hpml_bench.strategies.step import COMPILE_MODES, compile_mode
from hpml_bench.tasks import build_task
from hpml_bench.train.config import compose_train, to_train_config
from hpml_bench.train.flops import Throughput, count_train_flops, lookup_peak, measure


@pytest.mark.parametrize("arch, weights", [("resnet18", "ResNet18_Weights"), ("resnet50", "ResNet50_Weights")])
def test_forward_count_matches_torchvision_published_gflops(arch, weights):
    model = getattr(torchvision.models, arch)()
    published = getattr(torchvision.models, weights).IMAGENET1K_V1.meta["_ops"]  # GFLOPS, 1 per multiply-add
    forward = count_train_flops(model, (3, 224, 224), loss_fn=None) / 2 / 1e9  # FlopCounterMode: 2 per MAC
    assert forward == pytest.approx(published, rel=0.02)
    train = count_train_flops(model, (3, 224, 224), build_task("classification", 1000).loss)
    # backward = grad wrt activations + grad wrt weights, ~2x forward (the stem needs no input grad)
    assert 2.8 < train / (2 * forward * 1e9) < 3.0


def test_counting_touches_no_rng_and_no_parameter():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Dropout(0.5), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 6 * 6, 4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    meter, info = measure(model, (3, 8, 8), build_task("classification", 4), torch.device("cpu"), "fp32", None, 1)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and next(model.parameters()).device.type == "cpu"
    # conv 2*8*27*36 + linear 2*288*4, forward; backward adds weight grads (both) + input grad (linear)
    forward = 2 * 8 * 27 * 36 + 2 * 288 * 4
    assert info["flops_per_sample"] == forward + 2 * 8 * 27 * 36 + 2 * 2 * 288 * 4
    assert info["peak_tflops"] is None and meter.rates(10, 1.0)["mfu"] is None  # CPU: TFLOP/s alone


@pytest.mark.parametrize("name, precision, peak", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989.5), ("NVIDIA H100 PCIe", "bf16", 756.5), ("NVIDIA H100 NVL", "fp16", 835.5),
    ("NVIDIA H200", "bf16", 989.5), ("NVIDIA A100-SXM4-80GB", "bf16", 312.0), ("NVIDIA A100-PCIE-40GB", "fp32", 156.0),
    ("NVIDIA L40S", "bf16", 362.05), ("NVIDIA L4", "fp16", 121.0), ("Tesla T4", "fp16", 65.0),
    ("Tesla V100-SXM2-32GB", "fp16", 125.0), ("Tesla V100-PCIE-32GB", "fp32", 14.0), ("Quadro RTX 8000", "fp16", 130.5),
    ("Tesla V100-SXM2-32GB", "bf16", None), ("NVIDIA GeForce GTX 1080", "fp32", None),
])
def test_peak_table_picks_the_device_and_precision(name, precision, peak):
    value, source = lookup_peak(name, precision)
    assert value == peak
    assert ("trainer.peak_tflops" in source) == (peak is None)


def test_fp32_uses_the_fp32_peak_when_tf32_is_off(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert lookup_peak("NVIDIA H100 80GB HBM3", "fp32")[0] == 67.0


def test_mfu_is_achieved_over_peak_times_devices():
    rates = Throughput(flops_per_sample=1e9, peak_tflops=2.0, devices=4).rates(samples=8000, seconds=2.0)
    assert rates["tflops"] == pytest.approx(4.0) and rates["mfu"] == pytest.approx(0.5)


def test_a_run_writes_tflops_and_mfu_everywhere(hpml, tmp_path):
    result = hpml("train", *TINY, "model=mlp", "dataset=synthetic", "trainer.peak_tflops=0.002", "run_dir=r",
                  "trainer.checkpoint_every=0", "logger.tensorboard=true")
    assert result.rc == 0, result.err
    epochs = pd.read_csv(tmp_path / "r" / "epochs.csv")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    flops = summary["flops_per_sample"]
    assert flops > 0 and summary["peak_tflops"] == 0.002 and summary["peak_source"] == "trainer.peak_tflops"
    achieved = flops * epochs["samples"] / epochs["run_s"] / 1e12
    assert (epochs["tflops"] - achieved).abs().max() < 1e-12
    assert (epochs["mfu"] - epochs["tflops"] / 0.002).abs().max() < 1e-9
    assert summary["median_mfu"] == pytest.approx(summary["median_tflops"] / 0.002)
    assert "TFLOP/s" in result.out and "MFU" in result.out and "GFLOP per training sample" in result.out
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(tmp_path / "r" / "tb")).Reload().Tags()["scalars"]
    assert {"epoch/tflops", "epoch/mfu"} <= set(tags)


@pytest.mark.parametrize("value, mode", [(True, "default"), (False, "off"), ("true", "default"), ("False", "off"),
                                         *[(m, m) for m in COMPILE_MODES]])
def test_compile_modes_and_boolean_aliases(value, mode):
    assert compile_mode(value) == mode


def test_compile_is_accepted_from_the_command_line_and_a_typo_is_refused():
    for value in ("true", "false", *COMPILE_MODES):
        cfg = to_train_config(compose_train(["model=mlp", f"trainer.compile={value}"]))
        assert cfg.trainer.compile in COMPILE_MODES
    with pytest.raises(HpmlError, match="trainer.compile=reduce_overhead: use one of off, default, reduce-overhead"):
        to_train_config(compose_train(["model=mlp", "trainer.compile=reduce_overhead"]))


@pytest.mark.slow
def test_a_compiled_run_trains(hpml, tmp_path):
    result = hpml("train", "model=mlp", "dataset=synthetic", "dataset.num_train=32", "dataset.num_val=8",
                  "dataset.image_size=8", "dataset.batch_size=16", "trainer.epochs=1", "trainer.progress=never",
                  "trainer.checkpoint_every=0", "trainer.compile=default", "run_dir=c")
    assert result.rc == 0, result.err
    epochs = pd.read_csv(tmp_path / "c" / "epochs.csv")
    assert epochs["samples"].iloc[0] == 32 and epochs["train_loss"].notna().all()


class AutocastNet(torch.nn.Module):
    """Opens an autocast context for its input's device, as HCT's Performer does: the meta
    device has no autocast, so this model runs anywhere but there."""

    def __init__(self):
        super().__init__()
        self.conv, self.drop, self.fc = torch.nn.Conv2d(3, 8, 3), torch.nn.Dropout(0.5), torch.nn.Linear(8 * 6 * 6, 4)

    def forward(self, x):
        if torch.is_autocast_enabled(x.device.type):  # HCT's Performer asks the same
            x = x.float()
        return self.fc(self.drop(self.conv(x)).flatten(1))


def test_a_model_the_meta_device_cannot_run_is_counted_on_the_device_at_batch_1():
    torch.manual_seed(3)
    model = AutocastNet()
    with pytest.raises(RuntimeError, match="autocast"):
        count_train_flops(model, (3, 8, 8), build_task("classification", 4).loss)  # meta: the failure it falls back from
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    _, info = measure(model, (3, 8, 8), build_task("classification", 4), torch.device("cpu"), "fp32", None, 1)
    assert torch.equal(rng, torch.get_rng_state())  # dropout drew in a forked generator state
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    forward = 2 * 8 * 27 * 36 + 2 * 288 * 4  # the same layers as above: the same count, whichever device
    assert info["flops_per_sample"] == forward + 2 * 8 * 27 * 36 + 2 * 2 * 288 * 4
    assert info["flops_counted_on"] == "cpu at batch 1"
    assert info["flops_note"].startswith("FLOPs counted on cpu at batch 1 (meta device: RuntimeError: unknown device type")


def test_a_device_count_equals_the_meta_count():
    model, loss = torchvision.models.resnet18(num_classes=10), build_task("classification", 10).loss
    on_meta = count_train_flops(model, (3, 64, 64), loss)
    assert count_train_flops(model, (3, 64, 64), loss, device="cpu", batch=1) == on_meta > 0


def test_regnet_and_timm_are_counted():
    """RegNet cannot be built on the meta device but, once built, a copy runs there; its forward
    count matches torchvision's published figure. A timm model is counted too."""
    import timm

    regnet = torchvision.models.regnet_x_400mf()
    published = torchvision.models.RegNet_X_400MF_Weights.IMAGENET1K_V1.meta["_ops"]
    assert count_train_flops(regnet, (3, 224, 224), loss_fn=None) / 2 / 1e9 == pytest.approx(published, rel=0.02)
    _, info = measure(timm.create_model("test_vit", num_classes=4), (3, 32, 32), build_task("classification", 4),
                      torch.device("cpu"), "fp32", None, 1)
    assert info["flops_per_sample"] > 0 and info["flops_counted_on"] == "meta"


def test_an_hct_run_has_tflops(hpml, tmp_path):
    result = hpml("train", *TINY, "model=hct_tiny", "trainer.epochs=1", "trainer.checkpoint_every=0",
                  "trainer.peak_tflops=0.001", "run_dir=h")
    assert result.rc == 0, result.err
    summary = json.loads((tmp_path / "h" / "summary.json").read_text())
    # HCT's BatchNorm sees a 1x1 map at 16 px: batch 1 cannot train it, batch 2 can
    assert summary["flops_per_sample"] > 0 and summary["flops_counted_on"] == "cpu at batch 2"
    assert summary["median_tflops"] > 0 and summary["median_mfu"] > 0
    assert "counted on cpu at batch 2: the meta device cannot run the model" in " ".join(result.out.split())


@pytest.mark.parametrize("overrides", [["model=torchvision", "model.arch=regnet_x_400mf"],
                                       ["model=timm", "model.arch=test_vit", "dataset.image_size=auto"]],
                         ids=["tv-regnet", "timm-test_vit"])
def test_outside_model_runs_have_tflops_counted_on_meta(overrides, hpml, tmp_path):
    """Through `hpml train`: RegNet is built on the CPU (the meta device cannot build it) but a
    copy runs on meta, as a timm ViT does; the run's table says which way it was counted."""
    result = hpml("train", *TINY, "dataset.num_train=16", "dataset.num_val=8", "trainer.epochs=1",
                  "trainer.checkpoint_every=0", "trainer.peak_tflops=0.001", *overrides, "run_dir=o")
    assert result.rc == 0, result.err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["flops_per_sample"] > 0 and summary["flops_counted_on"] == "meta"
    assert summary["median_tflops"] > 0 and summary["median_mfu"] > 0
    assert "GFLOP per training sample (forward + backward, counted on the meta device)" in " ".join(result.out.split())
