"""The one exception type for a user's mistake."""


class HpmlError(Exception):
    """A user's mistake: printed as `error: <message>` with exit code 2, no traceback.

    The message names what is wrong and how to fix it, in one line.
    """
