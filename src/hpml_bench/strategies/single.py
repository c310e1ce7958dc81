"""`single`: one device, no wrapper — the baseline every speedup is measured against."""
from hpml_bench.strategies.base import STRATEGIES, Strategy, StrategyConfig

STRATEGIES.register("single", config=StrategyConfig)(Strategy)
