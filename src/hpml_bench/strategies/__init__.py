"""Strategies: each file registers one in STRATEGIES."""
from hpml_bench.strategies import ddp, single  # noqa: F401  (registers)
from hpml_bench.strategies.base import STRATEGIES, StepOutput, StepSettings, Strategy, StrategyConfig


def build_strategy(cfg: StrategyConfig, step: StepSettings) -> Strategy:
    return STRATEGIES.get(cfg.name)(cfg, step)


__all__ = ["STRATEGIES", "StepOutput", "StepSettings", "Strategy", "StrategyConfig", "build_strategy"]
