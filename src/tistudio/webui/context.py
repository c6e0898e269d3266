"""What every tab shares: the path guard, the job registry (which holds the one loaded model), the
model given on the command line, and a scratch folder for downloads."""
from __future__ import annotations

import functools
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
        """The loaded model for `model`, loading it if needed. While a run trains, only the model it
        uses may be asked for: replacing it would pull the weights from under the run."""
        path = self.model_path(model)
        if self.jobs.running() is not None and self.jobs.models.loaded not in (None, path):
            raise TIStudioError(f"Model {model}: a run is training on {self.jobs.models.loaded}; wait for it or "
                                "interrupt it before switching models")
        return self.jobs.models.get(path, family or None)


def user_message(exc: TIStudioError) -> str:
    """What the page shows for an error: the config names options by their CLI flag, the page by
    its labels ("--steps 0: ..." -> "Max steps 0: ...")."""
    return in_labels(str(exc))


def user_errors(fn):
    """Show a TIStudioError as the page's error pop-up (one line), like the CLI's `error:` line."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import gradio as gr

        try:
            return fn(*args, **kwargs)
        except TIStudioError as exc:
            raise gr.Error(user_message(exc), print_exception=False) from None
    return wrapper
