"""How data-loader workers start: the platform's fork in a single process, a fork server once
a process group exists (a fork while a communicator thread takes a Python thread state gives a
child that hangs before running a line: CPython gh-112275; a DDP CI run hung that way)."""
import pytest
import torch
from omegaconf import OmegaConf

from hpml_bench.data import build_loaders
from hpml_bench.strategies import StepSettings, build_strategy
from hpml_bench.train.config import compose_train
from tests.conftest import TINY


@pytest.fixture
def loaders():
    made = []

    def build(*overrides):
        cfg = compose_train([*TINY, "dataset.num_workers=2", *overrides])
        strategy = build_strategy(OmegaConf.to_object(cfg.strategy), StepSettings(device="cpu"))
        strategy.setup()  # ddp: a one-process gloo group (in-memory store)
        made.append(strategy)
        return build_loaders(OmegaConf.to_object(cfg.dataset), strategy, "classification", 0)

    yield build
    for strategy in made:
        strategy.teardown()


def start_method(loader) -> str | None:
    ctx = loader.multiprocessing_context
    return None if ctx is None else ctx.get_start_method()


def test_workers_fork_alone_and_come_from_a_fork_server_in_a_process_group(loaders):
    assert [start_method(x) for x in loaders("strategy=single")] == [None, None]  # the platform default
    assert [start_method(x) for x in loaders("strategy=ddp")] == ["forkserver", "forkserver"]
    assert start_method(loaders("strategy=ddp", "dataset.worker_start=fork")[0]) == "fork"
    assert start_method(loaders("strategy=single", "dataset.worker_start=spawn")[0]) == "spawn"
    assert loaders("strategy=ddp", "dataset.num_workers=0")[0].multiprocessing_context is None


def test_fork_server_workers_give_the_forked_workers_batches(loaders):
    def epoch(*overrides):
        torch.manual_seed(0)  # the workers' base seed comes from here
        train, _ = loaders("strategy=ddp", *overrides)
        return list(train)

    forked, served = epoch("dataset.worker_start=fork"), epoch()
    assert len(forked) == len(served) == 4
    assert all(torch.equal(a, b) for x, y in zip(forked, served) for a, b in zip(x, y))
