"""The Python API: what the CLI and the web UI call. Each function takes plain values or config
dataclasses and returns results; none prints or parses argv."""
from __future__ import annotations

from pathlib import Path

from .errors import TIStudioError
from .models.components import Components


def load_model(path: str, family: str | None = None, prediction: str | None = None) -> Components:
    from .models.load import load_model as _load

    return _load(path, family=family, prediction=prediction)


def create_embedding(model: str | Components, name: str, init_text: str = "*", vectors: int = 1,
                     out_dir: str | Path = "embeddings", overwrite: bool = False, fmt: str = "a1111-pt",
                     init: str = "words") -> Path:
    """Write OUT_DIR/NAME.pt (or .safetensors) initialised from `init_text` (`init`: words | cross |
    zeros | random, embedding/create.py)."""
    from .embedding.create import create_file

    return create_file(model, name, init_text, vectors, out_dir, overwrite, fmt, init)


def create_dreamartist_pair(model: str | Components, name: str, init_text: str = "*", vectors: int = 3,
                            neg_init_text: str = "*", neg_vectors: int = 6, out_dir: str | Path = "embeddings",
                            overwrite: bool = False, fmt: str = "a1111-pt", init: str = "words") -> tuple[Path, Path]:
    """Write DreamArtist's pair OUT_DIR/NAME and OUT_DIR/NAME-neg (embedding/create.py)."""
    from .embedding.create import create_pair_files

    return create_pair_files(model, name, init_text, vectors, neg_init_text, neg_vectors, out_dir, overwrite, fmt,
                             init)


def train(cfg, components: Components | None = None, callback=None, stop=None, progress: bool = True,
          resume: str | None = None):
    """Train as `cfg` says. `components` passed in come back as they were (dtypes, devices, modes,
    requires_grad, checkpointing, compile, torch's thread count: train/ownership.py), so a shared
    model can go on generating; without them the run loads and owns its own."""
    from .toy import scorer  # noqa: F401  registers --eval-toy's scorer; waits for torch like the rest
    from .train.run import train as _train

    return _train(cfg, components, callback, stop, progress, resume)


def check_run(cfg, where: str = "command line", near_distance: int = 6, subject: str = "character"):
    """What the training run `cfg` would refuse or regret, per embedding and per concept, without
    loading the model's weights (train/preflight.py): a RunCheck (.usable, .table(), .to_json())."""
    from .train.preflight import check_run as _check

    return _check(cfg, where, near_distance, subject)


def create_hypernetwork(model: str | Components, name: str, modules=None, structure=None,
                        out_dir: str | Path = "hypernetworks", overwrite: bool = False, seed: int = 0) -> Path:
    """Write OUT_DIR/NAME.pt: a new hypernetwork in A1111's format (hypernetwork/create.py)."""
    from .hypernetwork.create import create_file

    return create_file(model, name, modules, structure, out_dir, overwrite, seed)


def scan_for_model(folder: str | Path | None, widths: tuple[int, ...], warn=print,
                   within: str | Path | None = None) -> dict:
    """{trigger: Loaded} for every embedding under `folder` (recursive, as A1111 scans) that fits
    the model; duplicate triggers and files for other model sizes are reported through `warn`.
    `within`: read nothing whose real location is outside this folder (links included)."""
    from .embedding.formats.scan import scan_embeddings

    if not folder:
        return {}
    result = scan_embeddings(folder, within)
    for trigger, paths in result.duplicates.items():
        warn(f"warning: trigger {trigger!r} is used by {len(paths)} files; using {paths[0]}")
    for path, reason in result.skipped:
        warn(f"warning: skipped {path}: {reason}")
    found = {}
    for trigger, loaded in result.embeddings.items():
        if loaded.embedding.widths == tuple(widths):
            found[trigger] = loaded
        else:
            warn(f"warning: {trigger!r} has width {loaded.embedding.widths}, not the model's {tuple(widths)}; skipped")
    return found


def generate(model: str | Components, options, embeddings_dir: str | Path | None = None,
             out_dir: str | Path = "outputs", clip_skip: int = 1, vectors: dict | None = None,
             say=None, hypernetworks_dir: str | Path | None = None,
             within: str | Path | None = None) -> list[Path]:
    """Images as `OUT_DIR/NNNNN-SEED.png`, numbered on from what the folder holds (never overwriting).
    `say` receives the notes a user needs: which embeddings the prompts used, words that look meant
    for an embedding but match none, and scan warnings. `<hypernet:name:mult>` tags in the prompt
    name hypernetworks in `hypernetworks_dir`. `within`: embeddings whose real location is outside
    it are skipped (the web UI's root)."""
    from dataclasses import replace

    from .embedding.usage import prompt_usage
    from .generate.files import check_out_dir, embedding_hash, image_paths, resolve_seed
    from .generate.sample import generate as _generate, save_png
    from .hypernetwork.apply import check_fits as hypernetwork_fits, parse_tags, resolve

    say = say or (lambda text: None)
    prompt, tags = parse_tags(options.prompt)
    networks = resolve(hypernetworks_dir, tags)  # a missing file is refused before anything is made
    out_dir = check_out_dir(out_dir)  # before loading a multi-GB model
    options = replace(options, seed=resolve_seed(options.seed))  # the seed the names and infotext record
    c = load_model(model) if isinstance(model, str) else model
    for hn, _ in networks:
        hypernetwork_fits(hn, c.unet, f"<hypernet:{hn.name}>")
    loaded = scan_for_model(embeddings_dir, c.widths, say, within)
    found = {**{t: entry.embedding.vectors for t, entry in loaded.items()}, **(vectors or {})}
    # The prompt without its <hypernet:...> tags: they name no embedding, so they are not reported.
    usage = prompt_usage(c.tokenizer, {t: int(v[0].shape[0]) for t, v in found.items()},
                         prompt, options.negative_prompt)
    for line in usage.lines() if found or usage.unknown else ():  # no embeddings, nothing odd: no note
        say(line)
    hashes = {t: h for t in usage.used if t in loaded and loaded[t].files
              and (h := embedding_hash(loaded[t].files[0]))}
    images = _generate(c, options, found, clip_skip=clip_skip, progress=True, ti_hashes=hashes,
                       hypernetworks=networks)
    paths = image_paths(out_dir, [options.seed + i for i in range(len(images))])
    return [save_png(image, path) for image, path in zip(images, paths)]


def compat(path: str | Path, target: str | None = None) -> list:
    """Whether each client (A1111, Forge, ComfyUI, kohya, InvokeAI, diffusers) loads the embedding at
    `path`, used with a model of family `target` (default: the file's own): compat.Verdict list."""
    from .embedding.compat import check
    from .embedding.compat_facts import facts
    from .models.family import FAMILIES

    if target is not None and target not in FAMILIES:
        raise TIStudioError(f"--on {target!r}: use sd1, sd2 or sdxl")
    return check(facts(path), target)
