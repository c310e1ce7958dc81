"""`model=custom model.target=<module>:<callable>`: a class or factory in the user's own code.

The working directory is importable; `model.path=<file.py>` imports a file from elsewhere.
The callable gets `num_classes` and `in_channels` when its signature takes them, plus
`model.kwargs`. Where the code came from (module, file, sha256) is what the run folder's
model_source.json records (models/provenance.py)."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from torch import nn

from hpml_bench.errors import HpmlError
from hpml_bench.models.base import MODELS
from hpml_bench.models.source import SourceConfig, build_declared
from hpml_bench.registry import did_you_mean
from hpml_bench.runfolder.checksums import (
    file_sha256,  # one sha256 for checkpoints, artifacts and model code
)


@dataclass
class CustomConfig(SourceConfig):
    name: str = "custom"
    # <module>:<callable>, e.g. mynet:MyNet (a class or a function returning an nn.Module)
    target: str = ""
    # a .py file to import the module from (null: import <module> from the working directory / sys.path)
    path: Optional[str] = None

    def __post_init__(self):
        module, sep, attr = self.target.partition(":")
        if not (module and sep and attr):
            raise HpmlError(f"model.target={self.target or '(empty)'}: give <module>:<callable>, e.g. "
                            f"model.target=mynet:MyNet for class MyNet in ./mynet.py")

    def describe_build(self) -> str:
        return f"model.target={self.target}"

    def build(self) -> nn.Module:
        factory = load_target(self.target, self.path)
        try:
            return factory(**call_arguments(factory, self.num_classes, self.in_channels, self.kwargs))
        except HpmlError:
            raise
        except Exception as exc:
            raise HpmlError(f"model.target={self.target} raised {type(exc).__name__} when called: "
                            f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}") from exc

    def source(self) -> dict:
        """Where the code came from: module, callable, file and its sha256."""
        module_name, _, attr = self.target.partition(":")
        module = import_module(module_name, self.path)
        file = Path(getattr(module, "__file__", "") or "")
        return {"target": self.target, "module": module_name, "callable": attr,
                "file": str(file.resolve()) if file.is_file() else None,
                "sha256": file_sha256(file) if file.is_file() else None}


def import_module(module_name: str, path: Optional[str]):
    """The module, from `path` when given, else by name with the working directory first on sys.path."""
    if path:
        file = Path(path).expanduser()
        if not file.is_file():
            raise HpmlError(f"model.path={path}: no such file; give the .py file that defines {module_name}")
        if module_name in sys.modules and getattr(sys.modules[module_name], "__file__", None) == str(file.resolve()):
            return sys.modules[module_name]
        spec = importlib.util.spec_from_file_location(module_name, file.resolve())
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # pickling and dataclasses look the module up by name
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise _import_error(module_name, f"{file}", exc) from exc
        return module
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise _import_error(module_name, f"{cwd} and sys.path", exc) from exc


def _import_error(module_name: str, where: str, exc: BaseException) -> HpmlError:
    if isinstance(exc, ModuleNotFoundError) and exc.name == module_name.split(".")[0]:
        return HpmlError(f"model.target: module {module_name} not found (looked in {where}); run from the folder "
                         f"that holds {module_name.split('.')[0]}.py, or give model.path=<file.py>")
    line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return HpmlError(f"model.target: importing {module_name} (from {where}) failed: {type(exc).__name__}: {line[:200]}")


def load_target(target: str, path: Optional[str]) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    module = import_module(module_name, path)
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(module) if not n.startswith("_")]
            raise HpmlError(f"model.target={target}: {module.__file__} has no {attr}{did_you_mean(attr, names)}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise HpmlError(f"model.target={target} is a {type(obj).__name__}, not a class or function")
    return obj


def call_arguments(factory: Callable, num_classes: int, in_channels: int, kwargs: dict) -> dict:
    """num_classes / in_channels where the signature takes them (or **kwargs), then model.kwargs."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    given = {k: v for k, v in (("num_classes", num_classes), ("in_channels", in_channels)) if takes_any or k in params}
    return {**given, **dict(kwargs)}


@MODELS.register("custom", config=CustomConfig)
def build_custom_model(cfg: CustomConfig) -> nn.Module:
    return build_declared(cfg)
