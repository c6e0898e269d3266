"""The concept-fidelity benchmark: does an embedding really learn a concept?

On the toy model a held-out concept ("teal star") can be drawn but was never named, and the rule-based
classifier knows what every image shows. So: render a small dataset of the concept, create an
embedding from its init word (the shape), train it with the defaults below, draw N images from
template prompts holding the embedding and count how many the classifier reads as the concept. The
same count for the init word alone (same prompts, same seeds) is the baseline the embedding must beat.

`tistudio bench fidelity` and `make demo` (tistudio.demo) both run `run_fidelity`.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..atomic import write_text, write_with
from ..config import METHODS, DreamArtistConfig, RecipeConfig
from ..embedding.create import create_file, create_pair_files
from ..errors import TIStudioError
from ..models.load import load_model
from ..runs.folder import RunFolder
from ..train.run import train
from . import scorer  # noqa: F401  (registers --eval-toy's scorer, which the bench's runs use)
from .concepts import Concept
from .sample import SAMPLE_SEED, draw, sample_prompts

NAME = "toy-concept"   # the trigger; free of colour/shape words, so only the vectors can carry them


@dataclass(frozen=True)
class FidelitySettings:
    """Defaults tuned on the shipped toy model (docs/toy.md: "Fidelity benchmark").

    One vector is enough for a colour on top of a known shape and learns fastest; the toy text
    encoder's token vectors are small and the model is tiny, so a high learning rate is safe. The
    plain `subject` template: the concept is the whole subject, and [filewords] would hand the shape
    to the caption instead of the embedding. Samples use the toy model's scoring settings (DDIM 20,
    CFG 5) so the baseline matches `tistudio toy score --baselines`."""

    method: str = "ti"               # ti | dreamartist | hypernetwork (defaults: for_method)
    # The recipe sweep's winner (docs/toy.md "Recipe sweep"), with RecipeConfig's min-SNR-5: cosine's
    # decay in A1111's grammar. Step numbers, not fractions of --steps: fractions collapse into
    # equal (refused) ends on a run of a few steps.
    steps: int = 1000
    lr: str = "0.1:250, 0.07:500, 0.035:750, 0.01"
    vectors: int = 1
    neg_vectors: int = 2             # DreamArtist's negative
    # DreamArtist's options; training cfg 2 measured to beat the guide's 3 and 5 here (docs/toy.md)
    dreamartist: DreamArtistConfig = DreamArtistConfig(cfg="2")
    ema: float = 0.0                 # EMA decay of the vectors (--ema), 0 = off
    ema_replace_every: int = 0       # --ema-replace-every (25: the DreamArtist extension's copy-back)
    # DreamArtist's negative prompt when sampling: "name" = NAME-neg alone (the guide's use);
    # "twin" = each prompt with NAME-neg in NAME's place (as training pairs them, and the extension's previews)
    negative: str = "name"
    clip_grad_mode: str = "none"     # --clip-grad-mode (norm: the DreamArtist extension's clip at 1)
    batch_size: int = 1
    template: str = "subject"
    images: int = 10                 # rendered training images
    samples: int = 64                # images drawn for each score
    guidance: float = 5.0
    sampler_steps: int = 20
    seed: int = 0
    preview_every: int = 0           # 0: no previews (the demo asks for some)
    threads: int = 1                 # on shared cores one thread beats two (docs/toy.md)
    recipe: RecipeConfig = RecipeConfig()  # the training recipe (docs/recipe.md; bench/recipe_sweep.py)
    init: str = "words"              # how `create` starts the vectors (words | cross | zeros | random)
    eval_every: int = 0              # score fidelity every N steps during training (RUN/evaluations.csv), 0 = off
    eval_samples: int = 16           # images per such score

    def __post_init__(self):
        if self.method not in METHODS:
            raise TIStudioError(f"--method {self.method}: use {'|'.join(METHODS)}")
        if self.negative not in ("name", "twin"):
            raise TIStudioError(f"negative {self.negative!r}: use name or twin")
        if self.steps < 1 or self.samples < 1 or self.images < 1 or self.vectors < 1:
            raise TIStudioError("--steps, --samples, --images and --vectors must be at least 1")


# A hypernetwork has no trigger: it learns from the captions ("a star on a black background", the
# colour never named) that stars look teal, and is scored on the same init-word prompts as the
# baseline, with and without it on the UNet. Its rate, length and template, measured in
# docs/hypernetworks.md: it needs twice TI's steps.
HYPERNETWORK_DEFAULTS = dict(lr="0.002:2000, 0.0005", steps=4000, template="hypernetwork")


def for_method(method: str) -> FidelitySettings:
    """The tuned defaults of `method`."""
    return FidelitySettings(method=method, **(HYPERNETWORK_DEFAULTS if method == "hypernetwork" else {}))


@dataclass(frozen=True)
class FidelityResult:
    concept: str
    method: str
    fidelity: float          # share of samples with the embedding read as the concept
    baseline: float          # the same for the init word alone
    init_word: str
    wall_s: float            # everything: render, load, create, train, sample, classify
    train_s: float
    steps: int
    final_loss: float        # loss of the last step (one noisy sample)
    final_loss_avg: float    # its moving average (RUN/loss.csv loss_ema)
    samples: int
    settings: dict
    files: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def before_after_grid(before: list[np.ndarray], after: list[np.ndarray], labels: tuple[str, str],
                      scale: int = 4):
    """A PIL image: a labelled row of init-word images over a row of learned-embedding images."""
    from PIL import Image, ImageDraw

    n = min(len(before), len(after))
    side = before[0].shape[0] * scale
    gap, label_h = 4, 18
    grid = Image.new("RGB", (n * (side + gap) + gap, 2 * (side + label_h + gap) + gap), (255, 255, 255))
    pen = ImageDraw.Draw(grid)
    for row, (images, label) in enumerate(((before, labels[0]), (after, labels[1]))):
        top = gap + row * (side + label_h + gap)
        pen.text((gap, top + 3), label, fill=(0, 0, 0))
        for i in range(n):
            tile = Image.fromarray(images[i]).resize((side, side), Image.Resampling.NEAREST)
            grid.paste(tile, (gap + i * (side + gap), top + label_h))
    return grid


def _loss_average(path: Path) -> float:
    import csv

    if not path.is_file():
        return math.nan
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return float(rows[-1]["loss_ema"]) if rows and rows[-1].get("loss_ema") else math.nan


OWN = ("data", "embeddings", "hypernetworks", "runs", "before_after.png", "fidelity.json")


def prepare_out(out: Path) -> None:
    """An empty folder, or one an earlier run of this benchmark wrote (its files are replaced, so
    stale images never join the new dataset); anything else is refused rather than mixed into."""
    import shutil

    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / "fidelity.json").is_file():
        raise TIStudioError(f"--out {out}: folder is not empty and holds no earlier fidelity run; "
                            "choose a new or empty folder")
    for name in OWN:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def run_fidelity(concept: Concept, settings: FidelitySettings, out: str | Path, *, model: str | None = None,
                 progress: bool = False, log: Callable[[str], None] = lambda m: None,
                 grid_columns: int = 8) -> FidelityResult:
    """Render, create, train, sample and score one concept; everything goes under `out`:
    data/ (images + captions), embeddings/ (NAME.pt, NAME.safetensors [+ NAME-neg]), runs/NAME/
    (loss.csv, loss.png, previews), before_after.png and fidelity.json."""
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)  # sampling too, not only the training loop
    try:
        return _run(concept, settings, Path(out), model, progress, log, grid_columns)
    finally:
        torch.set_num_threads(threads)


def _run(concept: Concept, s: FidelitySettings, out: Path, model: str | None, progress: bool,
         log: Callable[[str], None], grid_columns: int) -> FidelityResult:
    from ..config import ModelConfig, TrainConfig
    from ..embedding.formats import load_embedding
    from . import default_model_path
    from .dataset import render_concept

    prepare_out(out)
    started = time.perf_counter()
    model = str(model or default_model_path())
    log(f"rendering {s.images} images of {concept.spec!r} into {out / 'data'}")
    render_concept(concept, s.images, out / "data", size=32, seed=s.seed)
    c = load_model(model)
    if s.method == "hypernetwork":
        return _run_hypernetwork(concept, s, out, model, c, progress, log, grid_columns, started)
    emb_dir = out / "embeddings"
    log(f"creating {NAME!r} ({s.method}) from the init word {concept.init_word!r}")
    if s.method == "ti":
        embedding = create_file(c, NAME, concept.init_word, s.vectors, emb_dir, overwrite=True, init=s.init)
        negative = None
    else:
        embedding, negative = create_pair_files(c, NAME, concept.init_word, s.vectors, "", s.neg_vectors,
                                                emb_dir, overwrite=True, init=s.init)
    cfg = TrainConfig(model=ModelConfig(model), embedding=str(embedding), data=str(out / "data"),
                      method=s.method, log_dir=str(out / "runs"), template=s.template, lr=s.lr,
                      batch_size=s.batch_size, steps=s.steps, width=32, height=32, seed=s.seed,
                      save_every=0, preview_every=s.preview_every, preview_steps=s.sampler_steps,
                      preview_cfg=s.guidance, preview_sampler="ddim", preview_prompt=f"a photo of a {NAME}",
                      threads=s.threads, dreamartist=s.dreamartist, recipe=s.recipe, ema=s.ema,
                      ema_replace_every=s.ema_replace_every,
                      clip_grad_mode=s.clip_grad_mode,
                      val_every=s.eval_every, eval_toy=concept.spec if s.eval_every else None,
                      eval_samples=s.eval_samples)
    log(f"training {s.steps} steps (lr {s.lr}, {s.vectors} vector(s), template {s.template})")
    t0 = time.perf_counter()
    result = train(cfg, components=c, progress=progress)
    train_s = time.perf_counter() - t0

    vectors = {NAME: load_embedding(embedding).vectors}
    if negative is not None:
        vectors[f"{NAME}-neg"] = load_embedding(negative).vectors
    prompts = sample_prompts(NAME, s.samples)
    if negative is None:
        negatives = [""] * s.samples
    elif s.negative == "twin":
        negatives = [p.replace(NAME, f"{NAME}-neg") for p in prompts]
    else:
        negatives = [f"{NAME}-neg"] * s.samples
    log(f"drawing {s.samples} images with the embedding and {s.samples} with {concept.init_word!r} alone")
    opts = dict(steps=s.sampler_steps, guidance=s.guidance, progress=progress, seed=SAMPLE_SEED + s.seed)
    learned = draw(c, prompts, negatives, vectors, **opts)
    # The baseline: the same prompts and starting noise with the bare init word, no negative.
    base = draw(c, sample_prompts(concept.init_word, s.samples), [""] * s.samples, {}, **opts)
    return _report(concept, s, out, result, train_s, started, learned, base, NAME, grid_columns)


def _report(concept: Concept, s: FidelitySettings, out: Path, result, train_s: float, started: float,
            learned: list, base: list, label: str, grid_columns: int) -> FidelityResult:
    """Score both image sets, write before_after.png and fidelity.json."""
    from .classifier import fraction_of

    fidelity = fraction_of(learned, concept.colour, concept.shape)
    baseline = fraction_of(base, concept.colour, concept.shape)

    grid = before_after_grid(base[:grid_columns], learned[:grid_columns],
                             (f"before: init word '{concept.init_word}' ({baseline:.0%} {concept.spec})",
                              f"after: learned '{label}' ({fidelity:.0%} {concept.spec})"))
    grid_path = write_with(out / "before_after.png", lambda tmp: grid.save(tmp, format="PNG"))
    run = RunFolder.open(result.run_dir)  # LOG_DIR/NAME, or NAME-2 … beside another embedding's run
    files = {"data": str(out / "data"), "embeddings": [str(p) for p in result.outputs],
             "run": str(run.root), "loss_plot": str(run.plot),
             "previews": [str(p) for p, _ in run.previews()],
             "before_after": str(grid_path), "json": str(out / "fidelity.json")}
    report = FidelityResult(
        concept=concept.spec, method=s.method, fidelity=fidelity, baseline=baseline,
        init_word=concept.init_word, wall_s=round(time.perf_counter() - started, 1), train_s=round(train_s, 1),
        steps=result.step, final_loss=result.last_loss, final_loss_avg=_loss_average(run.loss_csv),
        samples=s.samples, settings=asdict(s), files=files)
    write_json([report], out / "fidelity.json")
    return report


def _run_hypernetwork(concept: Concept, s: FidelitySettings, out: Path, model: str, c, progress: bool,
                      log: Callable[[str], None], grid_columns: int, started: float) -> FidelityResult:
    from ..config import ModelConfig, TrainConfig
    from ..hypernetwork import format as hn_format
    from ..hypernetwork.apply import applied
    from ..hypernetwork.create import create_file as create_hypernetwork

    log(f"creating the hypernetwork {NAME!r} (A1111 defaults: 1, 2, 1, linear, N(0, 0.01))")
    path = create_hypernetwork(c, NAME, out_dir=out / "hypernetworks", overwrite=True, seed=s.seed)
    cfg = TrainConfig(model=ModelConfig(model), method="hypernetwork", hypernetwork=str(path),
                      data=str(out / "data"), log_dir=str(out / "runs"), template=s.template, lr=s.lr,
                      batch_size=s.batch_size, steps=s.steps, width=32, height=32, seed=s.seed,
                      save_every=0, preview_every=s.preview_every, preview_steps=s.sampler_steps,
                      preview_cfg=s.guidance, preview_sampler="ddim",
                      preview_prompt=f"a photo of a {concept.init_word}", threads=s.threads)
    log(f"training {s.steps} steps (lr {s.lr}, template {s.template})")
    t0 = time.perf_counter()
    result = train(cfg, components=c, progress=progress)
    train_s = time.perf_counter() - t0
    log(f"drawing {s.samples} images of {concept.init_word!r} with the hypernetwork and {s.samples} without")
    opts = dict(steps=s.sampler_steps, guidance=s.guidance, progress=progress, seed=SAMPLE_SEED + s.seed)
    prompts = sample_prompts(concept.init_word, s.samples)
    with applied(c.unet, [(hn_format.load(path), 1.0)]):
        learned = draw(c, prompts, [""] * s.samples, {}, **opts)
    base = draw(c, prompts, [""] * s.samples, {}, **opts)
    return _report(concept, s, out, result, train_s, started, learned, base, f"<hypernet:{NAME}>", grid_columns)


def write_json(results: list[FidelityResult], path: str | Path) -> Path:
    return write_text(path, json.dumps([r.to_dict() for r in results], indent=2) + "\n")


def format_table(results: list[FidelityResult]) -> str:
    """The on-screen table: one row per (concept, method)."""
    head = ("concept", "method", "fidelity", "baseline", "wall s", "train s", "steps", "loss (avg)")
    rows = [(r.concept, r.method, f"{r.fidelity:.1%}", f"{r.baseline:.1%}", f"{r.wall_s:.0f}",
             f"{r.train_s:.0f}", str(r.steps), f"{r.final_loss_avg:.4f}") for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]

    def line(cells) -> str:  # names left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def with_overrides(settings: FidelitySettings, **given) -> FidelitySettings:
    """`settings` with every option the user actually gave (None = not given)."""
    return replace(settings, **{k: v for k, v in given.items() if v is not None})
