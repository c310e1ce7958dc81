"""The seeds' models: exact parameter counts, shapes, steps, attention, export, split points."""
import pytest
import torch
from torch import nn

import hpml_bench
from hpml_bench.config.groups import choices
from hpml_bench.errors import HpmlError
from hpml_bench.models import count_parameters, split_points
from hpml_bench.models.performer import PerformerAttention, relu_features
from hpml_bench.train.config import model_config

TINY_MODELS = [c for c in choices("model") if c.endswith("_tiny")]
SEGMENTATION = {"unet", "fcn", "segnet"}


def meta_model(name, **overrides):
    with torch.device("meta"):  # counting needs shapes only
        return hpml_bench.build_model(name, **overrides)


@pytest.mark.parametrize("name, overrides, expected", [
    ("hct", dict(in_channels=1, num_classes=2), 1_737_010),
    ("hct", dict(in_channels=3, num_classes=5), 1_739_349),
    ("hct", dict(in_channels=1, num_classes=2, num_conv_stages=5), 2_800_050),
    ("iformer_small", dict(num_classes=1000), 19_866_344),
    ("iformer_small", dict(num_classes=10), 19_485_194),
    ("unet", dict(in_channels=3, num_classes=2), 34_527_106),
    ("fcn", dict(in_channels=3, num_classes=2), 20_098_882),
    ("fcn", dict(in_channels=3, num_classes=2, seed_score_layers=True), 20_101_192),
    ("segnet", dict(in_channels=3, num_classes=2), 29_444_162),
])
def test_reference_parameter_counts(name, overrides, expected):
    assert count_parameters(meta_model(name, **overrides)) == expected


def test_hct_buffers_and_inception_frozen_head():
    assert sum(b.numel() for b in meta_model("hct").buffers()) == 8_693
    inception = meta_model("inception_v3", num_classes=5, freeze_backbone=True)
    assert count_parameters(inception, trainable_only=True) == 10_245


def test_hct_feature_maps_and_non_square_high_resolution():
    model = hpml_bench.build_model("hct").eval()
    x = torch.randn(1, 1, 512, 512)
    shapes = []
    with torch.no_grad():
        x = model.stem(x)
        for stage in model.stages:
            x = stage(x)
            shapes.append(tuple(x.shape[1:]))
        assert shapes == [(16, 64, 64), (32, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4)]
        assert model(torch.randn(1, 1, 1280, 768)).shape == (1, 2)


@pytest.mark.parametrize("size", [128, 224])
def test_iformer_small_at_two_input_sizes(size):
    torch.manual_seed(0)
    model = hpml_bench.build_model("iformer_small", num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 10)


def test_performer_attention_equals_direct_relu_kernel_attention():
    torch.manual_seed(0)
    attn = PerformerAttention(dim=16, heads=2, dropout=0.0).eval()
    x = torch.randn(2, 16, 3, 5)
    tokens = x.flatten(2).transpose(1, 2)  # [B, N, C]
    split = lambda t: t.reshape(2, 15, 2, 8).transpose(1, 2)  # [B, heads, N, d]
    q, k, v = split(attn.to_q(tokens)), split(attn.to_k(tokens)), split(attn.to_v(tokens))
    P = attn.projection
    phi = lambda t: torch.relu((t * 8 ** -0.25) @ P.T) + 1e-3
    scores = phi(q) @ phi(k).transpose(-1, -2)  # [B, h, N, N]: the quadratic form
    out = (scores / scores.sum(-1, keepdim=True)) @ v
    expected = attn.to_out(out.transpose(1, 2).reshape(2, 15, 16)).transpose(1, 2).reshape(2, 16, 3, 5)
    torch.testing.assert_close(attn(x), expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(relu_features(q, P), phi(q))
    assert P.shape == (int(8 * torch.log(torch.tensor(8.0))), 8)
    assert "projection" in dict(attn.named_buffers()) and not any(p is P for p in attn.parameters())


def test_performer_runs_in_float32_under_autocast():
    attn = PerformerAttention(dim=16, heads=2, dropout=0.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attn(torch.randn(1, 16, 4, 4))
    assert torch.isfinite(out).all()


def _input(name: str, batch: int = 2) -> torch.Tensor:
    cfg = model_config(name).resolved()
    return torch.randn(batch, cfg.in_channels, cfg.input_size, cfg.input_size)


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_variant_forward_backward(name):
    torch.manual_seed(0)
    model = hpml_bench.build_model(name).train()
    cfg = model_config(name).resolved()
    out = model(_input(name))
    logits = out[0] if isinstance(out, tuple) else out
    if cfg.task == "segmentation":
        assert logits.shape == (2, cfg.num_classes, cfg.input_size, cfg.input_size)
    else:
        assert logits.shape == (2, cfg.num_classes)
    logits.float().logsumexp(1).mean().backward()
    for pname, p in model.named_parameters():
        if p.requires_grad and "scores" not in pname:
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_variant_traces_and_exports(name):
    torch.manual_seed(0)
    model = hpml_bench.build_model(name).eval()
    x = _input(name, batch=1)
    with torch.no_grad():
        expected = model(x)
        traced = torch.jit.trace(model, x)
        torch.testing.assert_close(traced(x), expected)
        exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), expected)


@pytest.mark.parametrize("name", TINY_MODELS)
def test_split_points_compose_to_the_model_or_refuse(name):
    model = hpml_bench.build_model(name).eval()
    if model_config(name).name in SEGMENTATION:
        with pytest.raises(HpmlError, match="declares no pipeline split points"):
            split_points(model)
        return
    if model_config(name).name == "inception_v3":
        model.aux_logits = False
    stages = split_points(model)
    assert len(stages) >= 4
    x = _input(name, batch=1)
    with torch.no_grad():
        y = x
        for stage in stages:
            y = stage(y)
        torch.testing.assert_close(y, model(x))
    staged = {id(p) for s in stages for p in s.parameters()}
    assert staged == {id(p) for p in model.parameters()}  # every parameter sits in a stage


def test_local_weights_file_loads_and_bad_files_are_clear(tmp_path):
    torch.manual_seed(1)
    source = hpml_bench.build_model("hct_tiny")
    torch.save(source.state_dict(), tmp_path / "w.pt")
    loaded = hpml_bench.build_model("hct_tiny", weights=str(tmp_path / "w.pt"))
    for a, b in zip(source.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(HpmlError, match="does not fit this model"):
        hpml_bench.build_model("unet_tiny", weights=str(tmp_path / "w.pt"))
    with pytest.raises(HpmlError, match="no such file"):
        hpml_bench.build_model("hct_tiny", weights=str(tmp_path / "missing.pt"))
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(HpmlError, match="could not be read"):
        hpml_bench.build_model("hct_tiny", weights=str(tmp_path / "bad.pt"))


def test_weights_for_other_classes_load_all_but_the_head(tmp_path, capsys):
    torch.manual_seed(2)
    imagenet_like = hpml_bench.build_model("resnet18", num_classes=1000, in_channels=3)
    torch.save(imagenet_like.state_dict(), tmp_path / "r18.pt")
    tuned = hpml_bench.build_model("resnet18", num_classes=4, in_channels=3, weights=str(tmp_path / "r18.pt"))
    assert torch.equal(tuned.layer4[1].conv2.weight, imagenet_like.layer4[1].conv2.weight)
    assert tuned.fc.weight.shape == (4, 512)
    assert "head fc has another class count there; it starts fresh" in capsys.readouterr().out
    with pytest.raises(HpmlError, match="does not fit this model"):  # a body mismatch stays an error
        hpml_bench.build_model("resnet18", num_classes=4, in_channels=1, weights=str(tmp_path / "r18.pt"))


def test_inception_aux_logits_add_weighted_loss():
    from hpml_bench.tasks import build_task

    task = build_task("classification", 3)
    logits, aux, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    ce = nn.functional.cross_entropy
    torch.testing.assert_close(task.loss((logits, aux), y), ce(logits, y) + 0.4 * ce(aux, y))
    torch.testing.assert_close(task.loss((logits, None), y), ce(logits, y))
