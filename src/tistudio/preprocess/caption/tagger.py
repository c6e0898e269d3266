"""Booru taggers exported to ONNX, run with onnxruntime (no TensorFlow, no download).

Two families, told apart by their tag list:
- WD14-style (`selected_tags.csv`, columns tag_id,name,category,count; category 9 = rating): input
  NHWC float32 BGR 0..255, the image padded to a square with white, as those models were trained;
- DeepDanbooru (`tags.txt`, one tag a line, ratings spelled `rating:*`): input NHWC float32 RGB
  0..1, the image fitted inside the square and padded with black.
Either model may also take NCHW; the layout and size are read from the model's input shape.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import TIStudioError, first_line
from ..options import TaggerOptions

TAG_FILES = ("selected_tags.csv", "tags.csv", "tags.txt", "tags-general.txt")
DEFAULT_SIDE = {"wd14": 448, "deepdanbooru": 512}
RATING_CATEGORY = "9"
HINT = ("give a WD14 or DeepDanbooru model exported to ONNX (model.onnx) with its tag list "
        "(selected_tags.csv or tags.txt) beside it or via --tags")


@dataclass(frozen=True)
class TagList:
    names: tuple[str, ...]
    keep: tuple[bool, ...]  # False for rating tags, which never enter a caption
    kind: str  # "wd14" | "deepdanbooru"


def read_tag_list(path: Path) -> TagList:
    if not path.is_file():
        raise TIStudioError(f"--tags {path}: file not found; {HINT}")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or "name" not in rows[0]:
            raise TIStudioError(f"--tags {path}: a CSV tag list needs a header with a 'name' column; {HINT}")
        names = tuple(r["name"].strip() for r in rows)
        keep = tuple(r.get("category", "").strip() != RATING_CATEGORY and not n.startswith("rating:")
                     for r, n in zip(rows, names))
        return TagList(names, keep, "wd14")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise TIStudioError(f"--tags {path}: the tag list is empty; {HINT}")
    return TagList(names, tuple(not n.startswith("rating:") for n in names), "deepdanbooru")


def locate(model: Path, tags: Path | None) -> tuple[Path, Path]:
    """The .onnx file and its tag list, from a file or a folder holding both."""
    if model.is_dir():
        found = sorted(model.glob("*.onnx"))
        if len(found) != 1:
            raise TIStudioError(f"--tagger {model}: expected exactly one .onnx file in the folder, found "
                                f"{len(found)}; {HINT}")
        model = found[0]
    elif not model.is_file():
        raise TIStudioError(f"--tagger {model}: file not found; {HINT}")
    if model.suffix.lower() != ".onnx":
        raise TIStudioError(f"--tagger {model}: not an .onnx file; {HINT}")
    if tags is None:
        tags = next((model.parent / n for n in TAG_FILES if (model.parent / n).is_file()), None)
        if tags is None:
            raise TIStudioError(f"--tagger {model}: no tag list ({' or '.join(TAG_FILES)}) beside it; "
                                "pass --tags FILE")
    return model, tags


def _escape(tag: str) -> str:
    return re.sub(r"([\\()\[\]])", r"\\\1", tag)


def _display(name: str, options: TaggerOptions) -> str:
    text = name
    # Kaomoji such as ^_^ or o_o have no two letters in a row: their underscores are the face.
    if options.use_spaces and re.search(r"[A-Za-z]{2}", name):
        text = text.replace("_", " ")
    return _escape(text) if options.escape_brackets else text


def _norm(tag: str) -> str:
    return tag.strip().lower().replace(" ", "_")


def format_tags(tags: TagList, scores: np.ndarray, options: TaggerOptions) -> str:
    """Tags at or above the threshold, best first (or A-Z), rating tags and filtered tags removed."""
    blocked = {_norm(t) for t in options.filter_tags}
    picked = [(name, float(s)) for name, s, keep in zip(tags.names, scores, tags.keep)
              if keep and s >= options.threshold and _norm(name) not in blocked]
    if options.sort_alphabetically:
        picked.sort(key=lambda p: p[0])
    else:
        picked.sort(key=lambda p: -p[1])  # stable: equal scores keep the model's order
    parts = [_display(n, options) for n, _ in picked]
    if options.include_scores:
        parts = [f"({p}:{s:.3f})" for p, (_, s) in zip(parts, picked)]
    return ", ".join(parts)


class OnnxTagger:
    def __init__(self, model: Path, tags: Path | None, options: TaggerOptions):
        import onnxruntime as ort

        model, tags_path = locate(Path(model), None if tags is None else Path(tags))
        self.tags = read_tag_list(tags_path)
        self.kind = self.tags.kind if options.kind == "auto" else options.kind
        self.options = options
        try:
            self.session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise TIStudioError(f"--tagger {model}: onnxruntime cannot load it ({first_line(exc)}); {HINT}") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4 or 3 not in (shape[1], shape[3]):
            raise TIStudioError(f"--tagger {model}: input shape {shape} is not an image batch; {HINT}")
        self.channels_last = shape[3] == 3
        dims = shape[1:3] if self.channels_last else shape[2:4]
        self.side = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else DEFAULT_SIDE[self.kind]
        out = self.session.get_outputs()[0].shape[-1]
        if isinstance(out, int) and out != len(self.tags.names):
            raise TIStudioError(f"--tags {tags_path}: {len(self.tags.names)} tags but the model scores {out}; "
                                "give the tag list that came with this model")

    def _input(self, rgb: Image.Image) -> np.ndarray:
        w, h = rgb.size
        if self.kind == "wd14":
            side = max(w, h)
            square = Image.new("RGB", (side, side), (255, 255, 255))
            square.paste(rgb, ((side - w) // 2, (side - h) // 2))
            arr = np.asarray(square.resize((self.side, self.side), Image.Resampling.BICUBIC), np.float32)
            arr = arr[:, :, ::-1]  # RGB -> BGR
        else:
            k = self.side / max(w, h)
            fitted = rgb.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BICUBIC)
            square = Image.new("RGB", (self.side, self.side), (0, 0, 0))
            square.paste(fitted, ((self.side - fitted.width) // 2, (self.side - fitted.height) // 2))
            arr = np.asarray(square, np.float32) / 255.0
        arr = arr[None]  # [1, H, W, 3]
        return np.ascontiguousarray(arr if self.channels_last else arr.transpose(0, 3, 1, 2))

    def scores(self, rgb: Image.Image) -> np.ndarray:
        out = self.session.run(None, {self.input_name: self._input(rgb)})[0].reshape(-1)
        if out.shape[0] != len(self.tags.names):
            raise TIStudioError(f"--tags: {len(self.tags.names)} tags but the model scores {out.shape[0]}; "
                                "give the tag list that came with this model")
        return out

    def __call__(self, rgb: Image.Image) -> str:
        return format_tags(self.tags, self.scores(rgb), self.options)
