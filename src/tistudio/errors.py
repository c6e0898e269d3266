"""The one exception type users see: a single line naming the file or option and the fix."""


class TIStudioError(Exception):
    """Bad input or environment. The CLI prints `error: <message>` and exits 2, with no traceback."""

    def __init__(self, message: object = "", *args):
        # Messages quote user input (paths, option values, file contents), which may hold line
        # breaks: escape them so the error stays one line whatever the input (found by fuzzing).
        text = str(message).replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(text, *args)
