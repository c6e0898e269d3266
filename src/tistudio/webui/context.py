"""What every tab shares: the path guard, the job registry (which holds the one loaded model), the
model given on the command line, and a scratch folder for downloads."""
from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import in_labels
from ..errors import TIStudioError
from .jobs import JobRegistry
from .safety import PathGuard


@dataclass(frozen=True)
class Context:
    guard: PathGuard
    jobs: JobRegistry
    default_model: str
    scratch: Path

    def model_path(self, value: str) -> str:
        return str(self.guard.resolve(value, "Model", "any"))

    def components(self, model: str, family: str | None = None):
        """The server's loaded model for `model`, loading it if needed (a training run has its own,
        in its process: jobs.py)."""
        return self.jobs.models.get(self.model_path(model), family or None)


# The Create tabs' checkbox, and the CLI's advice reworded for it (embedding/create.py, hypernetwork/create.py).
OVERWRITE = "Overwrite an existing file"
SAY_OVERWRITE = {"pass --overwrite": f"tick “{OVERWRITE}”"}


def user_message(exc: TIStudioError, say: dict[str, str] | None = None) -> str:
    """What the page shows for an error: the config names options by their CLI flag, the page by
    its labels ("--steps 0: ..." -> "Max steps 0: ..."); `say` rewords a CLI phrase for the page."""
    text = str(exc)
    for cli, page in (say or {}).items():
        text = text.replace(cli, page)
    return in_labels(text)


def user_errors(fn, say: dict[str, str] | None = None):
    """Show a TIStudioError as the page's error pop-up (one line), like the CLI's `error:` line, and
    log that one line on the server (no traceback: it is the user's input, not a bug). `say` rewords
    a CLI phrase for the page, e.g. {"pass --overwrite": "tick Overwrite"}."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import gradio as gr

        try:
            return fn(*args, **kwargs)
        except TIStudioError as exc:
            text = user_message(exc, say)
            print(f"webui: error: {text}", file=sys.stderr, flush=True)
            raise gr.Error(text, print_exception=False) from None
    return wrapper


def clicked(event, fn, inputs, outputs, clear: bool = True, say: dict[str, str] | None = None):
    """Wire `fn` to `event` (a button's .click, a dropdown's .input) with user_errors. With `clear`,
    `outputs` (one message box) is emptied first, so an error never sits beside the success message
    of the click before. Returns the dependency that runs `fn` (to chain more after it)."""
    if clear:
        return event(lambda: "", None, outputs, queue=False, show_progress="hidden").then(
            user_errors(fn, say), inputs, outputs)
    return event(user_errors(fn, say), inputs, outputs)


# The browser packs an event's inputs into one string (a script, no round trip). gradio's page
# keeps every component that was ever a server event's input or output, and every status change
# of every later event (the live side's poll: 3 a second) walks them all: the Train form's 101
# fields made a tick cost about 7x what the poll's own outputs do.
PACK = "(...values) => JSON.stringify(values)"
UNPACK = "(text) => JSON.parse(text)"  # the other way: a server's list of values or gr.update()s


def packed(trigger, inputs: list, carrier):
    """Wire `trigger` (a button's .click) to pack `inputs`' values into `carrier` (a hidden
    Textbox) in the browser. Returns the event to chain the server's work on (it takes `carrier`)
    and the function that turns the carrier's text back into the inputs' values, each as its
    component hands it to an event (gr.Number's rounding), but a dropdown's as the page holds it:
    its choices change per page (a refresh, a log folder's runs), which the server's copy of the
    component does not know; the config and the path guard check the value."""
    import gradio as gr

    def unpack(payload: str) -> list:
        return [v if isinstance(c, gr.Dropdown) else c.preprocess(v) for c, v in zip(inputs, json.loads(payload))]
    return trigger(None, inputs, carrier, js=PACK, queue=False, show_progress="hidden").then, unpack
