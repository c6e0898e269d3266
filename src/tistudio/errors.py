"""The one exception type users see: a single line naming the file or option and the fix."""


class TIStudioError(Exception):
    """Bad input or environment. The CLI prints `error: <message>` and exits 2, with no traceback."""
