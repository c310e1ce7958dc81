"""`hpml train --help`: the config groups' choices and the composed default config."""
from __future__ import annotations

from omegaconf import OmegaConf

from hpml_bench.config import CHOICE_GROUPS, CONF_DIR, choices, compose_train
from hpml_bench.config_dirs import search_dirs

_INTRO = (CONF_DIR / "train.yaml").read_text().split("template: |-\n", 1)[1].split("== Config groups ==")[0]


def train_help(overrides: list[str]) -> str:
    """Hydra's help lists the stored schemas too; this lists what a user can choose."""
    intro = "\n".join(line[6:] for line in _INTRO.splitlines()).replace("$$", "$")
    groups = "\n".join(f"{group}: {', '.join(choices(group))}" for group in CHOICE_GROUPS)
    folders = "\n".join(f"  {folder}" for folder in search_dirs())
    config = OmegaConf.to_yaml(compose_train(overrides))
    return (f"{intro.rstrip()}\n\n== Config folders (searched in this order) ==\n{folders}\n\n"
            f"== Config groups ==\n{groups}\n\n== Config (with these overrides) ==\n{config}")
