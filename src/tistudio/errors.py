"""The one exception type users see: a single line naming the file or option and the fix."""


class TIStudioError(Exception):
    """Bad input or environment. The CLI prints `error: <message>` and exits 2, with no traceback."""

    def __init__(self, message: object = "", *args):
        # Messages quote user input (paths, option values, file contents), which may hold line
        # breaks: escape them so the error stays one line whatever the input (found by fuzzing).
        text = str(message).replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(text, *args)


def first_line(exc: BaseException) -> str:
    """A library exception as the tail of a one-line error: its first line, at most 200 characters
    (a KeyError or an empty message shows its type)."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    if isinstance(exc, KeyError) or not line:
        line = f"{type(exc).__name__} {line}".strip()
    return line[:200]
