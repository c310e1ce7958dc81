"""`hpml prepare dataset=<on-disk data set> dataset.root=<folder> [dataset.key=value ...]`: build a
data set's cache (decoded, resized, uint8) from the same overrides as a run."""
from __future__ import annotations

from omegaconf import OmegaConf

from hpml_bench.config.groups import config_error_line
from hpml_bench.config.words import hydra_words
from hpml_bench.data.cache import cache_folder, prepare_cache
from hpml_bench.errors import HpmlError
from hpml_bench.models.input_size import resolve_image_size
from hpml_bench.train.config import compose_train


def prepare_command(args: list[str]) -> int:
    """The `hpml prepare` command; returns the exit code."""
    dcfg = compose_train(hydra_words(args))
    try:
        dataset = OmegaConf.to_object(dcfg.dataset)
        model = OmegaConf.to_object(dcfg.model)
    except Exception as exc:
        if isinstance(exc.__cause__, HpmlError):
            raise exc.__cause__ from None
        raise HpmlError(config_error_line(exc)) from exc
    _, dataset = resolve_image_size(model, dataset)  # the size a run with these overrides uses
    task = dcfg.task if dcfg.task != "auto" else dataset.default_task
    index = prepare_cache(dataset, task)
    for split, info in index["splits"].items():
        skipped = f", skipped {len(info['skipped'])} unreadable: {', '.join(info['skipped'][:3])}" if info["skipped"] else ""
        print(f"{split}: {info['count']} samples{skipped}")
    print(f"cache: {cache_folder(dataset, task)} ({index['seconds']:.1f} s); train from it with dataset.cache=true")
    return 0
