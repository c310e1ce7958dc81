"""`hpml train --help`: the config groups' choices and the composed default config."""
from __future__ import annotations

from omegaconf import OmegaConf

from hpml_bench.config import CONF_DIR, GROUPS, choices, compose_train

_INTRO = (CONF_DIR / "train.yaml").read_text().split("template: |-\n", 1)[1].split("== Config groups ==")[0]


def train_help(overrides: list[str]) -> str:
    """Hydra's help lists the stored schemas too; this lists what a user can choose."""
    intro = "\n".join(line[6:] for line in _INTRO.splitlines()).replace("$$", "$")
    groups = "\n".join(f"{group}: {', '.join(choices(group))}" for group in GROUPS)
    config = OmegaConf.to_yaml(compose_train(overrides))
    return f"{intro.rstrip()}\n\n== Config groups ==\n{groups}\n\n== Config (with these overrides) ==\n{config}"
