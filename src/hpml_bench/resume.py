"""`resume=<run folder>`: re-apply the overrides that started the run, then today's."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from hpml_bench.runfolder import OVERRIDES


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def with_resumed_overrides(args: list[str]) -> list[str]:
    """The saved overrides of the resumed run, minus those given again now, then `args`.

    So `hpml train resume=runs/X trainer.epochs=8` continues run X's model and data set
    without the user repeating them.
    """
    resume = next((a.split("=", 1)[1] for a in args if _key(a) == "resume"), None)
    saved_file = Path(resume) / OVERRIDES if resume else None
    if saved_file is None or not saved_file.is_file():
        return args
    given = {_key(a) for a in args}
    saved = [str(o) for o in OmegaConf.load(saved_file) if _key(str(o)) not in given]
    return saved + args
