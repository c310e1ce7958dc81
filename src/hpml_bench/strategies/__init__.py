"""Strategies: each file registers one in STRATEGIES."""
from hpml_bench.strategies import ddp, dp, fsdp, pipe, single  # noqa: F401  (registers)
from hpml_bench.strategies.base import STRATEGIES, Strategy, StrategyConfig
from hpml_bench.strategies.dist_env import read_dist_env
from hpml_bench.strategies.step import StepOutput, StepSettings


def world_size_to_be(nproc_per_node: int) -> int:
    """How many processes the run will have: the launcher's, or nproc_per_node."""
    env = read_dist_env()
    return env.world_size if env.source != "single" else nproc_per_node


def build_strategy(cfg: StrategyConfig, step: StepSettings) -> Strategy:
    return STRATEGIES.get(cfg.name)(cfg, step)


__all__ = ["STRATEGIES", "StepOutput", "StepSettings", "Strategy", "StrategyConfig", "build_strategy"]
