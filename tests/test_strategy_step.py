"""The Strategy's step on its own: accumulation, clipping, precision, compile."""
import pytest
import torch
from torch import nn

from hpml_bench.strategies import StepSettings, build_strategy
from hpml_bench.strategies.base import StrategyConfig


def _setup(settings=StepSettings(device="cpu"), lr=0.1):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    strategy = build_strategy(StrategyConfig(name="single"), settings)
    strategy.setup()
    strategy.prepare(model, lambda m: torch.optim.SGD(m.parameters(), lr=lr), nn.CrossEntropyLoss())
    return strategy, model


def _batch(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_two_accumulated_halves_equal_one_full_batch():
    x, y = _batch(8)
    s1, m1 = _setup()
    s1.train_step((x, y))
    s2, m2 = _setup()
    s2.train_step((x[:4], y[:4]), step_optimizer=False, loss_scale=0.5)
    assert all(p.grad is not None for p in m2.parameters())  # kept for the next half
    s2.train_step((x[4:], y[4:]), step_optimizer=True, loss_scale=0.5)
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b)
    assert all(p.grad is None for p in m2.parameters())  # zeroed after the step


def test_grad_clipping_limits_the_update():
    x, y = _batch(8)
    s, m = _setup(StepSettings(device="cpu", grad_clip_norm=1e-3), lr=1.0)
    before = [p.detach().clone() for p in m.parameters()]
    s.train_step((x, y))
    moved = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(m.parameters(), before)))
    assert moved.item() == pytest.approx(1e-3, rel=1e-3)


def test_bf16_autocast_runs_the_forward_in_bf16():
    s, _ = _setup(StepSettings(device="cpu", precision="bf16"))
    out = s.train_step(_batch(4))
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)


@pytest.mark.slow
def test_torch_compile_gives_the_same_step():
    x, y = _batch(8)
    s1, m1 = _setup()
    s1.train_step((x, y))
    s2, m2 = _setup(StepSettings(device="cpu", compile=True))
    s2.train_step((x, y))
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert s2.unwrapped() is m2
