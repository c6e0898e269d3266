"""Dataset preparation: `preprocess(src, dst, options)` crops, flips, splits and captions a folder of
images; `check_dataset(path, ...)` reports what would hurt training. Heavy libraries (OpenCV,
onnxruntime, transformers) load only when an option needs them."""
from __future__ import annotations

from .doctor import DatasetReport, check_dataset
from .options import (AutoSizeOptions, BlipOptions, CaptionOptions, FocalOptions, PreprocessOptions,
                      TaggerOptions)
from .run import PreprocessReport, preprocess

__all__ = ["AutoSizeOptions", "BlipOptions", "CaptionOptions", "DatasetReport", "FocalOptions",
           "PreprocessOptions", "PreprocessReport", "TaggerOptions", "check_dataset", "preprocess"]
