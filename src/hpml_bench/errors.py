"""The one exception type for a user's mistake, and how the CLI reports it."""
from __future__ import annotations

import os
import sys
import traceback


class HpmlError(Exception):
    """A user's mistake: printed as `error: <message>` with exit code 2, no traceback.

    The message names what is wrong and how to fix it, in one line.
    """


def report_error(exc: BaseException) -> int:
    """Print `error: <one line>` (the traceback too when HPML_DEBUG=1); returns exit code 2."""
    if os.environ.get("HPML_DEBUG") == "1":
        traceback.print_exc()
    message = str(exc).strip()
    if "Original Traceback" in message:  # raised in a DataLoader worker: keep the worker's own line
        message = message.splitlines()[-1].split(": ", 1)[-1]
    print(f"error: {message}", file=sys.stderr)
    return 2
