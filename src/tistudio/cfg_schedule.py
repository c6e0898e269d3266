"""DreamArtist's guidance scale s(t) during training, parsed from text and never evaluated as code
(the reference passed the --cfg string to Python's eval()).

Grammar: a constant "3", or a dynamic range "lo-hi[:ln|cos|cos2]" (default ln). With r = t / (T-1)
(T = the scheduler's training timesteps, 1000 for SD), s(t) = lo + (hi - lo) * f(r) where
  ln:   f(r) = r
  cos:  f(r) = cos((r - 1) * pi / 2)   (rises fast at low noise, flattens towards t = T-1)
  cos2: f(r) = 1 - cos(r * pi / 2)     (flat at low noise, rises fast towards t = T-1)
so s = lo at t = 0 and s = hi at t = T-1 for every curve.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import TIStudioError

CURVES = ("ln", "cos", "cos2")
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_GRAMMAR = re.compile(rf"^{_NUMBER}(?:-{_NUMBER}(?::(ln|cos|cos2))?)?$")


@dataclass(frozen=True)
class CfgSchedule:
    lo: float
    hi: float
    curve: str = "ln"

    def scale(self, t, num_train_timesteps: int = 1000):
        """s(t) for integer timesteps t (a torch tensor [B]) -> float32 [B]. Only tensor methods are
        used, so this module (and config/validation.py, which checks --cfg with it) stays free of torch."""
        r = t.float() / max(1, num_train_timesteps - 1)
        if self.curve == "cos":
            f = ((r - 1) * (math.pi / 2)).cos()
        elif self.curve == "cos2":
            f = 1 - (r * (math.pi / 2)).cos()
        else:
            f = r
        return self.lo + (self.hi - self.lo) * f


def parse_cfg(text: str | float) -> CfgSchedule:
    value = str(text).replace(" ", "")
    match = _GRAMMAR.match(value)
    if not match:
        raise TIStudioError(f"--cfg {str(text)!r}: write a number like '3' or a range 'lo-hi' with an "
                            f"optional curve ':{'|:'.join(CURVES)}', e.g. '3-5:cos'")
    lo = float(match.group(1))
    hi = float(match.group(2)) if match.group(2) is not None else lo
    if lo <= 0 or hi <= 0:
        raise TIStudioError(f"--cfg {str(text)!r}: the scale must be positive (1 = no guidance)")
    return CfgSchedule(lo, hi, match.group(3) or "ln")
