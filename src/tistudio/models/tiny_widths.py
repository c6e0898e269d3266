"""The text-encoder widths of the tiny random test models (tests/tiny_models.py builds them from
this table), by family. `inspect` reads them to name an embedding trained on one; keeping the one
table here lets it do so without the package importing its tests."""
from __future__ import annotations

TINY_TEXT_WIDTHS = {"sd1": (32,), "sd2": (48,), "sdxl": (32, 64)}
