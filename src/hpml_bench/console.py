"""The rich console hpml prints through."""
from __future__ import annotations

import sys

from rich.console import Console


def make_console() -> Console:
    # Off a terminal (CI logs, pipes) rich assumes 80 columns and squeezes tables.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 140)
