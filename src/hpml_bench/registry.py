"""Name -> part registries, so parts are chosen by name from config (no if-chains)."""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterable, TypeVar

from hpml_bench.errors import HpmlError

T = TypeVar("T")


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest option, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_choice(kind: str, name: str, options: Iterable[str]) -> HpmlError:
    """The error for a name that is not among `options`, with a suggestion."""
    options = sorted(options)
    return HpmlError(
        f"unknown {kind} '{name}'{did_you_mean(name, options)}; choose one of: {', '.join(options)}"
    )


class Registry(Generic[T]):
    """Maps names to parts (classes or builder functions)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._parts: dict[str, T] = {}
        self._configs: dict[str, type] = {}

    def register(self, name: str, config: type | None = None) -> Callable[[T], T]:
        """Decorator: `@MODELS.register("hct", config=HCTConfig)`.

        `config` is the part's config dataclass; config.py stores it as the schema
        `<group>/<name>_schema` that the group's YAML files build on.
        """

        def add(part: T) -> T:
            if name in self._parts:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._parts[name] = part
            if config is not None:
                self._configs[name] = config
            return part

        return add

    def schemas(self) -> dict[str, type]:
        """name -> config dataclass, for every part that declared one."""
        return dict(self._configs)

    def get(self, name: str) -> T:
        """The part registered under `name`; an HpmlError with a suggestion otherwise."""
        try:
            return self._parts[name]
        except KeyError:
            raise unknown_choice(self.kind, name, self._parts) from None

    def names(self) -> list[str]:
        return sorted(self._parts)

    def __contains__(self, name: str) -> bool:
        return name in self._parts
