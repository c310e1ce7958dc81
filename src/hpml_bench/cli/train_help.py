"""`hpml train --help`: the config groups' choices and the composed config, each key described."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from hpml_bench.config.fielddoc import describe
from hpml_bench.config.groups import CHOICE_GROUPS, CONF_DIR, choices
from hpml_bench.config.search_path import search_dirs
from hpml_bench.train.config import TrainConfig, compose_train

_INTRO = (CONF_DIR / "train.yaml").read_text().split("template: |-\n", 1)[1].split("== Config groups ==")[0]


def train_help(overrides: list[str]) -> str:
    """Hydra's help lists the stored schemas too; this lists what a user can choose."""
    intro = "\n".join(line[6:] for line in _INTRO.splitlines()).replace("$$", "$")
    groups = "\n".join(f"{group}: {', '.join(choices(group))}" for group in CHOICE_GROUPS)
    folders = "\n".join(f"  {folder}" for folder in search_dirs())
    config = described_yaml(compose_train(overrides))
    return (f"{intro.rstrip()}\n\n== Config folders (searched in this order) ==\n{folders}\n\n"
            f"== Config groups ==\n{groups}\n\n== Config (with these overrides) ==\n{config}")
def described_yaml(cfg: DictConfig) -> str:
    """The config as YAML, with each key's description (from its dataclass field) at the line's end."""
    out = []
    for key in cfg:
        node = cfg._get_node(key)
        if isinstance(node, DictConfig):
            out.append(f"{key}:")
            schema = OmegaConf.get_type(node)
            for line in OmegaConf.to_yaml(node).rstrip().splitlines():
                out.append(_with_comment("  " + line, schema))
        else:
            out.append(_with_comment(OmegaConf.to_yaml({key: node._value()}).rstrip(), TrainConfig))
    return "\n".join(out) + "\n"


def _with_comment(line: str, schema: type | None) -> str:
    name = line.strip().split(":", 1)[0]
    nested = line.startswith("    ") or line.lstrip().startswith("- ")
    text = describe(schema, name) if schema is not None and not nested and ":" in line else ""
    return f"{line}  # {text}" if text else line
