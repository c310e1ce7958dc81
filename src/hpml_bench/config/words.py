"""The word grammar of every hpml command line: Hydra's override grammar (`key=value`,
`key='a b'`, `key=a\\ b`, `key=[1,2]`, `key=null`; https://hydra.cc/docs/advanced/override_grammar/basic/),
with one addition for paths: a value Hydra's lexer cannot read (`~/data`, `données/`,
`a=b.png`) means its own text, as if quoted (Hydra alone refuses the word). So
`images='my photos'`, `images="my photos"` and `images=my\\ photos` name the same folder in
every command, and `dataset.root=~/data` works as `dataset.root='~/data'` does.

Here, below every package that reads words (train's composing, slurm's and bench's configs, a
run's saved overrides); cli/args.py is how the commands use it.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Iterable

from hpml_bench.errors import HpmlError

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override
    from omegaconf import DictConfig

_GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"


@functools.cache
def _parser():
    """Hydra's override parser and its error class. Imported on the first word read: Hydra
    takes ~0.1 s to import, which `hpml list` (reading config folders only) never pays."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    return OverridesParser.create(), HydraException


def _parse(word: str) -> "Override":
    return _parser()[0].parse_override(word)


def _quoted(text: str) -> str:
    """`text` as one quoted string of Hydra's grammar (a backslash escapes only a quote)."""
    if "'" in text and '"' not in text:
        return f'"{text}"'
    return "'" + text.replace("'", "\\'") + "'"


def parse_word(word: str) -> "Override":
    """One `key=value` word as Hydra reads it; a value Hydra's lexer cannot read is read as
    its own text (the one addition, see the module docstring). One line when neither works."""
    failed = _parser()[1]
    try:
        return _parse(word)
    except failed as exc:
        key, sep, value = word.partition("=")
        if sep and value and not value.startswith(("'", '"', "[", "{")):
            try:
                override = _parse(f"{key}={_quoted(value)}")
                if override.value() == value:
                    return override
            except failed:
                pass
        first = str(exc).strip().splitlines()[0]
        raise HpmlError(f"cannot read the argument {word!r} ({first}); quote a value with spaces or "
                        f"special characters: key='...' (the override grammar: {_GRAMMAR})") from None


def is_override(word: str) -> bool:
    """A `key=value` (or `~key`) word, as opposed to a flag or a bare name."""
    return not word.startswith("-") and ("=" in word or word.startswith("~"))


def hydra_words(args: list[str]) -> list[str]:
    """The words as Hydra must see them to mean what `parse_word` reads: each value Hydra's
    lexer refuses becomes the same text, quoted. Flags and everything else pass unchanged."""
    out = []
    for word in args:
        if is_override(word):
            override = parse_word(word)
            if override.input_line != word:  # read as its own text: say it in Hydra's words
                key = word.partition("=")[0]
                word = f"{key}={_quoted(override.value())}"
        out.append(word)
    return out


def word(key: str, value: Any) -> str:
    """`key=value` as a word Hydra reads back as `value` (a text quoted when it must be)."""
    if not isinstance(value, str):
        return f"{key}={value}"
    try:
        if _parse(f"{key}={value}").value() == value:
            return f"{key}={value}"
    except _parser()[1]:
        pass
    return f"{key}={_quoted(value)}"


def key_of(word: str) -> str:
    """The key of a `key=value` word, without Hydra's +/++/~ prefixes and @package."""
    return word.partition("=")[0].lstrip("+~").partition("@")[0]


def value_of(args: list[str], key: str, default: Any = None) -> Any:
    """The value of the last `key=...` word among `args` (as Hydra reads it), else `default`."""
    for word in reversed(args):
        if is_override(word) and key_of(word) == key:
            override = parse_word(word)
            if override.is_sweep_override():
                raise HpmlError(f"{word}: one value only; quote a value that holds a comma: {key}='...'")
            return override.value()
    return default


def as_config(words: Iterable[str], prefix: str = "") -> "DictConfig":
    """`key=value` words (keys under `prefix`, which is dropped) as a config to merge, each
    value as Hydra reads it (OmegaConf.from_dotlist reads `a\\ b` and `a,b` otherwise)."""
    from omegaconf import OmegaConf  # here: see _parser (start-up of `hpml list`)

    cfg = OmegaConf.create()
    for w in words:
        key = key_of(w).removeprefix(prefix)
        OmegaConf.update(cfg, key, value_of([w], key_of(w)), force_add=True)
    return cfg
