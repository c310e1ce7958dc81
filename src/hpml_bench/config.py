"""The config schemas (stored in Hydra's ConfigStore), cross-field checks, and composing.

Each part's dataclass lives beside the part; this module only stores them as schemas
`<group>/<name>_schema`, which the YAML files under conf/ build on, so a misspelt key or a
wrong type fails when Hydra composes the config.
"""
from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass
from typing import Any, Optional

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hpml_bench import config_dirs
from hpml_bench.callbacks.loggers import LoggerConfig
from hpml_bench.callbacks.profiler import ProfilerConfig, check_memory_snapshot
from hpml_bench.data import DATASETS, DatasetConfig
from hpml_bench.errors import HpmlError
from hpml_bench.input_size import resolve_image_size
from hpml_bench.transfer import check_transfer
from hpml_bench.models import MODELS, ModelConfig
from hpml_bench.optim import OptimizerConfig, SchedulerConfig
from hpml_bench.registry import unknown_choice
from hpml_bench.strategies import STRATEGIES
from hpml_bench.tasks import TASKS
from hpml_bench.trainer import TrainerConfig

CONF_DIR = config_dirs.HPML_CONF  # hpml's own groups; the user's folder is searched first (config_dirs)
GROUPS = ("model", "dataset", "strategy", "optimizer", "scheduler", "trainer", "logger", "profiler")
# Train-config groups a command line may choose besides GROUPS (checked the same way).
CHOICE_GROUPS = (*GROUPS, "experiment")


@dataclass
class TrainConfig:
    model: Any = MISSING  # the model group (model=<choice>)
    dataset: Any = MISSING  # the data set group (dataset=<choice>)
    strategy: Any = MISSING  # the strategy group (strategy=<choice>)
    optimizer: OptimizerConfig = MISSING  # the optimizer group (optimizer=<choice>)
    scheduler: SchedulerConfig = MISSING  # the learning-rate schedule group (scheduler=<choice>)
    trainer: TrainerConfig = MISSING  # the training-loop group
    logger: LoggerConfig = MISSING  # the logger group (logger=<choice>)
    profiler: ProfilerConfig = MISSING  # the profiler group (profiler=<choice>)
    task: str = "auto"  # auto = the model's task; classification | segmentation
    device: str = "auto"  # auto | cpu | cuda
    resume: Optional[str] = None  # a run folder to continue from its last checkpoint
    run_dir: str = "runs/${oc.env:HPML_RUN_ID,${now:%Y-%m-%d_%H-%M-%S}}"  # the run folder; default runs/<time>, or runs/$HPML_RUN_ID

    def __post_init__(self):
        self.model = self.model.inspected(self.dataset)  # an outside model's task and input limits
        self.task = self.model.task if self.task == "auto" else self.task
        if self.task not in TASKS:
            raise unknown_choice("task", self.task, TASKS.names())
        if self.task != self.model.task:
            raise HpmlError(f"model {self.model.name} does a {self.model.task} task, not task={self.task}; pick a {self.task} model")
        self.model = fill_from_dataset(self.model, self.dataset, self.task)
        self.model, self.dataset = resolve_image_size(self.model, self.dataset)
        check_transfer(self)
        check_memory_snapshot(self.profiler, self.device)


def fill_from_dataset(model: ModelConfig, dataset: DatasetConfig, task: str) -> ModelConfig:
    """Take num_classes / in_channels from the data set; refuse explicit values that differ."""
    wanted = {"num_classes": dataset.mask_classes if task == "segmentation" else dataset.num_classes,
              "in_channels": dataset.channels}
    for key, value in wanted.items():
        given = getattr(model, key)
        if given is not None and given != value:
            raise HpmlError(f"model.{key}={given} but dataset {dataset.name} gives {value} for {task}; drop the override")
    return dataclasses.replace(model, **wanted)


def register_schemas() -> None:
    # The user's config folder goes first through this search-path plugin. Hydra finds plugins
    # by scanning the hydra_plugins namespace, and that scan misses an editable install's import
    # hook (setuptools' finder): registering it here (idempotent) makes the rule hold everywhere.
    from hydra.core.plugins import Plugins
    from hydra_plugins.hpml_config_dir import HpmlConfigDirSearchPath

    Plugins.instance().register(HpmlConfigDirSearchPath)
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for group, registry in (("model", MODELS), ("dataset", DATASETS), ("strategy", STRATEGIES)):
        for name, schema in registry.schemas().items():
            store.store(group=group, name=f"{name}_schema", node=schema)
    for group, schema in (("optimizer", OptimizerConfig), ("scheduler", SchedulerConfig),
                          ("trainer", TrainerConfig), ("logger", LoggerConfig), ("profiler", ProfilerConfig)):
        store.store(group=group, name="schema", node=schema)
    if not OmegaConf.has_resolver("now"):  # Hydra registers it only inside its own runs
        OmegaConf.register_new_resolver("now", lambda fmt: datetime.datetime.now().strftime(fmt), use_cache=True)
    if not OmegaConf.has_resolver("hpml_run_dir"):
        OmegaConf.register_new_resolver("hpml_run_dir", lambda resume, run_dir: resume or run_dir)


register_schemas()


def choices(group: str) -> list[str]:
    """The config names a group offers (<folder>/<group>/*.yaml, the user's folder and hpml's)."""
    return config_dirs.group_choices(group)


def check_group_choices(overrides: list[str]) -> None:
    """`model=resnt18`, `experiment=mnie` -> an error with the closest names, before Hydra's
    longer message (each value of a simple sweep `model=a,b` is checked too)."""
    for override in overrides:
        key, sep, value = override.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in CHOICE_GROUPS or any(c in value for c in "()[]{}*"):
            continue
        for name in value.split(","):
            if name not in ("", "null") and name not in choices(key):
                raise unknown_choice(key, name, choices(key))


def compose_train(overrides: list[str], with_hydra: bool = False) -> DictConfig:
    """Compose conf/train.yaml with overrides, as `hpml train` would (errors as HpmlError)."""
    check_group_choices(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            return compose("train", overrides=overrides, return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException) as exc:
        raise HpmlError(config_error_line(exc)) from exc


def config_error_line(exc: BaseException) -> str:
    """Hydra/OmegaConf's multi-line message reduced to one line."""
    lines = str(exc).strip().splitlines()
    # "In 'model/x': ConfigKeyError raised while composing config:" says what only on its next line
    parts = [" ".join(lines[:2]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]]
    if exc.__cause__ is not None and str(exc.__cause__).strip():
        parts.append(str(exc.__cause__).strip().splitlines()[0])
    return " ".join(parts) + " (`hpml train --cfg job` shows every key)"


def to_train_config(cfg: DictConfig) -> TrainConfig:
    """The typed config; runs every __post_init__ check."""
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        if isinstance(exc.__cause__, HpmlError):
            raise exc.__cause__ from None
        raise HpmlError(config_error_line(exc)) from exc
