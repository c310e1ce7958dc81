"""The config schemas (stored in Hydra's ConfigStore), cross-field checks, and composing.

Each part's dataclass lives beside the part; this module only stores them as schemas
`<group>/<name>_schema`, which the YAML files under conf/ build on, so a misspelt key or a
wrong type fails when Hydra composes the config.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from hpml_bench.callbacks.loggers import LoggerConfig
from hpml_bench.callbacks.profiler import ProfilerConfig, check_memory_snapshot
from hpml_bench.config.groups import CONF_DIR, check_group_choices, config_error_line
from hpml_bench.data import DATASETS, DatasetConfig
from hpml_bench.errors import HpmlError
from hpml_bench.models import MODELS, ModelConfig, build_model_from_config
from hpml_bench.models.input_size import resolve_image_size
from hpml_bench.registry import unknown_choice
from hpml_bench.strategies import STRATEGIES
from hpml_bench.tasks import TASKS
from hpml_bench.tasks.base import LossConfig, check_loss
from hpml_bench.train.finetune import check_transfer
from hpml_bench.train.optim import OptimizerConfig, SchedulerConfig
from hpml_bench.train.targets import check_goals
from hpml_bench.train.trainer_config import TrainerConfig

# `hpml train` without run_dir= or HPML_RUN_ID gets a folder of its own (RunFolder.new: the same
# time format); a composed config without the CLI (tests, library use) names it by the time.
RUN_DIR_DEFAULT = "runs/${oc.env:HPML_RUN_ID,${now:%Y-%m-%d_%H-%M-%S}}"


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
    loss: LossConfig = field(default_factory=LossConfig)  # the training loss: label smoothing, class weights
    task: str = "auto"  # auto = the model's task; classification | segmentation
    device: str = "auto"  # auto | cpu | cuda
    resume: Optional[str] = None  # a run folder to continue from its last checkpoint
    # the run folder; default runs/<time> (<time>-2, -3, ... for runs started in the same second), or runs/$HPML_RUN_ID
    run_dir: str = RUN_DIR_DEFAULT

    def __post_init__(self):
        if not str(self.run_dir).strip():  # "" would write the run into the working directory
            raise HpmlError("run_dir= is empty; name a folder (run_dir=runs/mine) or leave it out for runs/<time>")
        self.model = self.model.inspected(self.dataset)  # an outside model's task and input limits
        self.task = self.model.task if self.task == "auto" else self.task
        if self.task not in TASKS:
            raise unknown_choice("task", self.task, TASKS.names())
        if self.task != self.model.task:
            raise HpmlError(f"model {self.model.name} does a {self.model.task} task, not task={self.task}; pick a {self.task} model")
        self.model = fill_from_dataset(self.model, self.dataset, self.task)
        check_loss(self.loss, self.task, self.model.num_classes)
        self.model, self.dataset = resolve_image_size(self.model, self.dataset)
        check_transfer(self)
        # targets name metrics the run logs (an EMA's too)
        check_goals(self.trainer, TASKS.get(self.task).logged_metrics(ema=self.trainer.ema_decay is not None))
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


def compose_train(overrides: list[str], with_hydra: bool = False) -> DictConfig:
    """Compose conf/train.yaml with overrides, as `hpml train` would (errors as HpmlError)."""
    check_group_choices(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            return compose("train", overrides=overrides, return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException) as exc:
        raise HpmlError(config_error_line(exc)) from exc


def names_its_run_dir(cfg: DictConfig) -> bool:
    """True when the run folder was named (run_dir= anywhere in the config, or HPML_RUN_ID)."""
    raw = OmegaConf.to_container(OmegaConf.masked_copy(cfg, ["run_dir"]), resolve=False)["run_dir"]
    return raw != RUN_DIR_DEFAULT or bool(os.environ.get("HPML_RUN_ID"))  # set but empty: not a name


def to_train_config(cfg: DictConfig) -> TrainConfig:
    """The typed config; runs every __post_init__ check."""
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        if isinstance(exc.__cause__, HpmlError):
            raise exc.__cause__ from None
        raise HpmlError(config_error_line(exc)) from exc


def model_config(name: str, **overrides) -> ModelConfig:
    """The typed config of conf/model/<name>.yaml with field overrides applied."""
    dcfg = compose_train([f"model={name}"]).model
    try:
        merged = OmegaConf.merge(dcfg, overrides)
        return OmegaConf.to_object(merged)
    except Exception as exc:
        raise HpmlError(f"build_model({name!r}, ...): {str(exc).splitlines()[0]}") from exc


def build_model(name: str, **overrides) -> nn.Module:
    """The model of config `conf/model/<name>.yaml` with field overrides, e.g.
    `build_model("hct", num_classes=5, in_channels=3)` -> nn.Module (no training run)."""
    return build_model_from_config(model_config(name, **overrides))
