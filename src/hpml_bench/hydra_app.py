"""The Hydra application behind `hpml train` (so -m, --cfg and --help work as in Hydra)."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from hpml_bench import config  # noqa: F401  (stores the schemas and resolvers)
from hpml_bench.errors import HpmlError, report_error


# hpml's conf/ (the repository's top level, or the wheel's hpml_bench/conf); the user's folder
# goes before it through the hydra_plugins/hpml_config_dir search-path plugin.
@hydra.main(version_base=None, config_path=str(config.CONF_DIR), config_name="train")
def _train(cfg: DictConfig) -> None:
    from hpml_bench.run import run_training

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    try:
        run_training(cfg, run_dir, list(hc.overrides.task), OmegaConf.to_container(hc.runtime.choices))
    except HpmlError as exc:
        if run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # Hydra made it for this run; a failed start leaves no empty folder
        sys.exit(report_error(exc))


def run(overrides: list[str]) -> int:
    """Run the Hydra app with these command-line overrides."""
    saved = sys.argv
    sys.argv = ["hpml train", *overrides]
    try:
        _train()
    except SystemExit as exc:  # a failed run inside Hydra: keep its exit code
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = saved
    return 0
