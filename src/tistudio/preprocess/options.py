"""Options for `preprocess`, as frozen dataclasses. Validation names the CLI flag so the one-line
error tells a person what to change; this module imports only the standard library."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..data.captions import check_encoding
from ..errors import TIStudioError

EXISTING_CAPTION_ACTIONS = ("ignore", "copy", "prepend", "append")
ALPHA_ACTIONS = ("weight", "flatten")
AUTOSIZE_OBJECTIVES = ("maximize-area", "minimize-error")
TAGGER_KINDS = ("auto", "wd14", "deepdanbooru")
# Beyond this many pixels an image is skipped: a 100 MP decode is ~300 MB of RGB before any crop.
DEFAULT_MAX_PIXELS = 100_000_000


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise TIStudioError(message)


@dataclass(frozen=True)
class TaggerOptions:
    """Booru tagger output, as the guide recommends: threshold 0.75, score order (tags early in the
    caption weigh more), spaces for underscores, brackets escaped so they stay literal in prompts."""
    threshold: float = 0.75
    sort_alphabetically: bool = False
    use_spaces: bool = True
    escape_brackets: bool = True
    filter_tags: tuple[str, ...] = ()
    include_scores: bool = False
    kind: str = "auto"

    def __post_init__(self):
        _check(0.0 <= self.threshold <= 1.0, f"--tag-threshold {self.threshold}: use a value in [0, 1]")
        _check(self.kind in TAGGER_KINDS, f"--tagger-kind {self.kind}: use one of {', '.join(TAGGER_KINDS)}")


@dataclass(frozen=True)
class BlipOptions:
    num_beams: int = 1
    min_length: int = 5
    max_length: int = 40

    def __post_init__(self):
        _check(self.num_beams >= 1, f"--blip-beams {self.num_beams}: use 1 or more")
        _check(1 <= self.min_length <= self.max_length,
               f"--blip-min-length {self.min_length}: use 1..--blip-max-length ({self.max_length})")


@dataclass(frozen=True)
class CaptionOptions:
    """Captioners run in order BLIP, then tagger; their texts are joined with ', '."""
    blip: Path | None = None
    tagger: Path | None = None
    tags: Path | None = None
    blip_options: BlipOptions = field(default_factory=BlipOptions)
    tagger_options: TaggerOptions = field(default_factory=TaggerOptions)
    # A1111 keeps the user's own captions ("copy"): without them [filewords] would be empty.
    existing: str = "copy"
    encoding: str = "utf-8"           # of SRC's .txt captions; outputs are always UTF-8
    in_filename: bool = False

    def __post_init__(self):
        _check(self.existing in EXISTING_CAPTION_ACTIONS,
               f"--existing-captions {self.existing}: use one of {', '.join(EXISTING_CAPTION_ACTIONS)}")
        _check(self.tags is None or self.tagger is not None, "--tags needs --tagger MODEL.onnx as well")
        check_encoding(self.encoding)


@dataclass(frozen=True)
class FocalOptions:
    """Weights of the three point-of-interest finders (A1111's defaults)."""
    face_weight: float = 0.9
    entropy_weight: float = 0.15
    edges_weight: float = 0.5
    debug: bool = False

    def __post_init__(self):
        weights = (self.face_weight, self.entropy_weight, self.edges_weight)
        _check(all(w >= 0 for w in weights) and sum(weights) > 0,
               "--focal-*-weight: use weights >= 0, at least one of them > 0")


@dataclass(frozen=True)
class AutoSizeOptions:
    """Per-image output size: the candidate (multiples of `step`) whose aspect is closest to the
    image's, within bounds. Defaults follow A1111's auto-sized crop."""
    min_dim: int = 384
    max_dim: int = 768
    min_area: int = 64 * 64
    max_area: int = 640 * 640
    objective: str = "maximize-area"
    threshold: float = 0.1
    step: int = 64

    def __post_init__(self):
        _check(self.step >= 8 and self.step % 8 == 0, f"--auto-step {self.step}: use a multiple of 8")
        _check(8 <= self.min_dim <= self.max_dim,
               f"--auto-min-dim {self.min_dim}: use 8..--auto-max-dim ({self.max_dim})")
        _check(0 < self.min_area <= self.max_area,
               f"--auto-min-area {self.min_area}: use 1..--auto-max-area ({self.max_area})")
        _check(self.objective in AUTOSIZE_OBJECTIVES,
               f"--auto-objective {self.objective}: use one of {', '.join(AUTOSIZE_OBJECTIVES)}")
        _check(0.0 <= self.threshold < 1.0, f"--auto-threshold {self.threshold}: use a value in [0, 1)")


@dataclass(frozen=True)
class PreprocessOptions:
    width: int = 512
    height: int = 512
    keep_size: bool = False
    flip: bool = False
    split: bool = False
    split_threshold: float = 0.5
    split_overlap: float = 0.2
    focal: FocalOptions | None = None
    auto_size: AutoSizeOptions | None = None
    # "weight": transparent pixels become a `<name>_att.png` loss-weight map (0 = ignored);
    # "flatten": composite over `background` only.
    alpha: str = "weight"
    background: tuple[int, int, int] = (255, 255, 255)
    max_pixels: int = DEFAULT_MAX_PIXELS
    caption: CaptionOptions = field(default_factory=CaptionOptions)

    def __post_init__(self):
        for flag, value in (("--width", self.width), ("--height", self.height)):
            _check(value >= 8 and value % 8 == 0, f"{flag} {value}: use a multiple of 8 (the latent grid)")
        _check(self.split_threshold >= 0, f"--split-threshold {self.split_threshold}: use a value >= 0")
        _check(0.0 <= self.split_overlap < 1.0, f"--split-overlap {self.split_overlap}: use a value in [0, 1)")
        _check(self.alpha in ALPHA_ACTIONS, f"--alpha {self.alpha}: use one of {', '.join(ALPHA_ACTIONS)}")
        _check(self.max_pixels > 0, f"--max-pixels {self.max_pixels}: use a positive number")
        if self.keep_size:
            clash = [flag for flag, on in (("--split", self.split), ("--focal-crop", self.focal),
                                           ("--auto-size", self.auto_size)) if on]
            _check(not clash, f"--keep-size cannot be combined with {', '.join(clash)}: drop one of them")
