"""`tistudio train --model M --embedding FILE --data DIR [--config run.toml] [flags]`

Options given on the command line override the TOML file; options not given keep its values or
the defaults. With --resume the run's saved config.toml is used, and only the options that may
change on resume (config.RESUMABLE) may differ from it."""
from __future__ import annotations

import os
import signal
import sys
from ..config import RESUMABLE, TrainConfig
from ..errors import TIStudioError

INTERRUPTED = 130  # 128 + SIGINT, what main() returns for an aborted run too

# flag -> (config field, type, help). Types: None = store_true, False = store_false.
OPTIONS = {
    "--embedding": ("embedding", str, "embedding file to train (from `tistudio create`)"),
    "--hypernetwork": ("hypernetwork", str, "train this hypernetwork .pt instead of an embedding (from "
                       "`tistudio create-hypernetwork`; default --lr 0.00001, --template hypernetwork)"),
    "--data": ("data", str, "folder of training images with optional .txt captions"),
    "--log-dir": ("log_dir", str, "run folders go to LOG_DIR/NAME (default runs/)"),
    "--output": ("output", str, "final embedding path (default: overwrite --embedding)"),
    "--template": ("template", str, "style | subject | style_filewords | subject_filewords | none | PATH"),
    "--filename-regex": ("filename_regex", str, r"regex whose matches form the caption, e.g. '\w+'"),
    "--filename-join": ("filename_join", str, "string joining the regex matches (default ' ')"),
    "--shuffle-tags": ("shuffle_tags", None, "shuffle the comma-separated caption tags each step"),
    "--tag-dropout": ("tag_dropout", float, "probability of dropping each caption tag each step"),
    "--lr": ("lr", str, "learning rate or schedule, e.g. '0.05:200, 0.005:1000, 0.001' (default 0.005)"),
    "--batch-size": ("batch_size", int, "images per micro-batch (default 1)"),
    "--grad-accum": ("grad_accum", int, "micro-batches per optimizer step (default 1)"),
    "--steps": ("steps", int, "the step to train up to, counted from the step the embedding already "
                "stores (as in A1111): an embedding at step 1000 with --steps 3000 trains 2000 more "
                "(default 3000)"),
    "--width": ("width", int, "training width, multiple of 8 (default: the model's own size, from its config)"),
    "--height": ("height", int, "training height, multiple of 8"),
    "--flip": ("flip", None, "randomly mirror images (exact: mirrored latents are encoded too)"),
    "--seed": ("seed", int, "seed for data order, noise and prompts (default 0)"),
    "--latent-sampling": ("latent_sampling", str, "once | deterministic | random (default once)"),
    "--vae-offload": ("vae_offload", None, "move the VAE off the accelerator after caching latents (with "
                      "--hypernetwork also the text encoders, after caching the prompts: the guide's tip)"),
    "--save-every": ("save_every", int, "snapshot the embedding every N steps, 0 = off (default 500)"),
    "--preview-every": ("preview_every", int, "preview image every N steps, 0 = off (default 500)"),
    "--preview-prompt": ("preview_prompt", str, "preview prompt (default: a dataset prompt)"),
    "--preview-negative": ("preview_negative", str, "preview negative prompt"),
    "--preview-seed": ("preview_seed", int, "preview seed (default 1234)"),
    "--preview-steps": ("preview_steps", int, "preview sampling steps (default 20)"),
    "--preview-cfg": ("preview_cfg", float, "preview CFG scale (default 7)"),
    "--preview-sampler": ("preview_sampler", str, "euler_a | euler | dpmpp_2m | ddim"),
    "--png-embeddings": ("png_embeddings", None, "also save previews with the embedding inside (A1111 PNG)"),
    "--precision": ("precision", str, "fp32 | bf16 | fp16 for the frozen weights (vectors stay fp32)"),
    "--clip-grad-mode": ("clip_grad_mode", str, "none | norm | value (default none)"),
    "--clip-grad": ("clip_grad", float, "clipping threshold (default 1.0)"),
    "--gradient-checkpointing": ("gradient_checkpointing", None,
                                 "recompute UNet and text-encoder activations: less memory, ~1.3x compute"),
    "--device": ("device", str, "auto | cpu | cuda | cuda:N"),
    "--profile": ("profile", str, "low-memory | balanced | fast: speed/memory defaults (docs/speed.md)"),
    "--channels-last": ("channels_last", None, "NHWC layout for the UNet (default: from --profile)"),
    "--compile": ("compile", None, "torch.compile the UNet (default: on with --profile fast)"),
    "--attention": ("attention", str, "sdpa (default) | xformers | classic"),
    "--threads": ("threads", int, "CPU threads (default: from --profile)"),
    "--no-heap-reuse": ("heap_reuse", False, "CPU: give freed memory back to the system after every step "
                        "(slower; by default it is kept for the next step)"),
    "--num-processes": ("num_processes", int, "data-parallel processes on this machine (default 1)"),
    "--val-every": ("val_every", int, "deterministic validation loss every N steps, 0 = off (default)"),
    "--val-split": ("val_split", float, "hold out this share of the images for validation, e.g. 0.2"),
    "--val-data": ("val_data", str, "folder of held-out validation images (instead of --val-split)"),
    "--val-images": ("val_images", int, "at most N validation images (default 8)"),
    "--val-timesteps": ("val_timesteps", int, "timesteps per validation image (default 5)"),
    "--early-stop": ("early_stop", int, "stop after N evaluations without a better validation loss"),
    "--max-norm": ("max_norm", float, "cap vector norms at this multiple of the vocabulary's median"),
    "--no-plot": ("plot", False, "do not write RUN/loss.png"),
    "--tensorboard": ("tensorboard", None, "write TensorBoard scalars and previews to RUN/tensorboard"),
    "--eval-clip": ("eval_clip", str, "local CLIP model folder: image-image and text-image scores"),
    "--eval-toy": ("eval_toy", str, "toy-world concept, e.g. 'teal star': classifier fidelity"),
    "--eval-samples": ("eval_samples", int, "images generated per evaluation for --eval-* (default 4)"),
    "--method": ("method", str, "ti (default) | dreamartist (positive + negative pair, docs/dreamartist.md)"),
    "--ema": ("ema", float, "keep an EMA of the vectors with this decay (e.g. 0.97) for previews and outputs"),
    "--ema-replace-every": ("ema_replace_every", int, "copy the EMA into the trained vectors every N steps"),
    "--grayscale-copies": ("grayscale_copies", None, "add a greyscale copy of every image (tagged monochrome)"),
    "--keep-last": ("keep_last", int, "keep only the N latest snapshots in RUN/embeddings (default 0 = all)"),
    "--latent-cache": ("latent_cache", str, "memory | disk (memory-mapped, reused, in RUN/latents) | auto "
                       "(default: disk from 1000 images)"),
    "--buckets": ("buckets", None, "train each image at the aspect-ratio bucket nearest its shape (default: on "
                  "when the images' aspect ratios differ; docs/buckets.md)"),
    "--no-buckets": ("buckets", False, "crop every image to --width x --height (no aspect-ratio buckets)"),
    "--bucket-step": ("bucket_step", int, "bucket sides are multiples of this (default 64)"),
    "--bucket-min": ("bucket_min", int, "shortest bucket side (default: half the shorter training side)"),
    "--bucket-max": ("bucket_max", int, "longest bucket side (default: twice the longer training side)"),
    "--random-crop": ("random_crop", None, "jitter the crop within the bucket's remainder (cached variants, "
                      "docs/buckets.md)"),
    "--color-jitter": ("color_jitter", str, "B,C,S,H: brightness, contrast, saturation (±factor) and hue (± turn) "
                       "jitter, e.g. 0.1,0.1,0.1,0.02 (cached variants)"),
    "--augment-variants": ("augment_variants", int, "variants per image cached for --random-crop/--color-jitter "
                           "(default 4; each costs one more encoding)"),
    "--vae": ("vae", str, "VAE to use instead of the model's, for caching and previews: a diffusers "
              "AutoencoderKL folder or a .safetensors/.ckpt file"),
    "--train-encoders": ("train_encoders", str, "SDXL: both (default) | l | g: train only CLIP-L's or CLIP-G's "
                         "vectors (the other's stay at their start; the file still holds both)"),
}
# DreamArtist (--method dreamartist) options, nested under [dreamartist] in TOML files.
DREAMARTIST_OPTIONS = {
    "--negative": ("negative", str, "negative embedding file (default NAME-neg beside --embedding)"),
    "--cfg": ("cfg", str, "training guidance scale: 3 (characters), 5 (styles) or lo-hi[:ln|cos|cos2]"),
    "--neg-lr-weight": ("neg_lr_weight", float, "negative learning rate = lr x this (default 1)"),
    "--neg-plain-template": ("neg_plain_template", None, "negative prompt from the template without [filewords]"),
    "--reconstruction": ("reconstruction", None, "add L1 between the VAE-decoded prediction and the image"),
    "--rec-weight": ("rec_weight", float, "weight of the reconstruction loss (default 1)"),
    "--rec-max-timestep": ("rec_max_timestep", int, "no reconstruction loss above this timestep (default 999)"),
    "--rec-timestep-weight": ("rec_timestep_weight", str, "none | alpha: scale reconstruction by the signal share"),
    "--ema-neg": ("ema_neg", float, "EMA decay of the negative embedding (default: --ema)"),
}
# The training recipe (docs/recipe.md), nested under [recipe] in TOML files.
RECIPE_OPTIONS = {
    "--loss": ("loss", str, "mse (default) | huber | l1: the per-pixel loss"),
    "--huber-delta": ("huber_delta", float, "Huber loss: quadratic below this error, L1 above (default 0.1)"),
    "--loss-weighting": ("loss_weighting", str, "none (default) | min-snr | debiased | p2: weight samples by SNR(t)"),
    "--snr-gamma": ("snr_gamma", float, "min-snr: cap at min(SNR, gamma)/SNR (default 5)"),
    "--noise-offset": ("noise_offset", float, "offset noise per channel, e.g. 0.05 (default 0 = off)"),
    "--zero-terminal-snr": ("zero_terminal_snr", None, "rescale betas so the last timestep is pure noise "
                            "(for v-prediction models)"),
    "--timestep-range": ("timestep_range", str, "train on timesteps lo:hi only (default 0:1000)"),
    "--timestep-sampling": ("timestep_sampling", str, "uniform (default) | logit-normal (favours mid timesteps)"),
    "--optimizer": ("optimizer", str, "adamw (default) | adafactor | prodigy (use --lr 1) | lion | adamw8bit (CUDA)"),
    "--lr-scheduler": ("lr_scheduler", str, "step-grammar (default: --lr's schedule) | constant | cosine | "
                       "cosine-restarts | linear (on a single --lr rate)"),
    "--lr-cycles": ("lr_cycles", int, "cosine-restarts: number of cycles (default 3)"),
    "--warmup-steps": ("warmup_steps", int, "linear learning-rate warm-up over N steps (default 0)"),
    "--norm": ("norm", str, "none (default) | preserve (vectors at the vocabulary median norm) | "
               "fixed-direction (DTI: only the direction trains)"),
    "--init-reg": ("init_reg", float, "L2 pull toward the start vectors with this weight, e.g. 0.01 (default 0)"),
}
MODEL_OPTIONS = {
    "--model": ("model", str, "diffusers folder or .safetensors/.ckpt checkpoint"),
    "--family": ("family", str, "sd1 | sd2 | sdxl (default: detected)"),
    "--prediction": ("prediction", str, "epsilon | v_prediction (default: detected)"),
    "--model-config": ("config", str, "diffusers folder whose configs describe a single-file model's "
                       "architecture (default: shipped configs for the detected family)"),
    "--clip-skip": ("clip_skip", int, "1 = last layer (default); the guide suggests 2 for anime models"),
}


def _add(p, table) -> None:
    for flag, (dest, typ, help_text) in table.items():
        if typ is None or typ is False:  # False: a --no-X flag that stores False
            p.add_argument(flag, dest=dest, action="store_const", const=typ is None, default=None, help=help_text)
        else:
            p.add_argument(flag, dest=dest, type=typ, default=None, help=help_text)


def register(sub) -> None:
    p = sub.add_parser("train", help="train an embedding (or a hypernetwork) on a folder of images",
                       description="Train a Textual Inversion embedding, a DreamArtist pair or (--hypernetwork) "
                       "an A1111 hypernetwork into the run folder LOG_DIR/NAME (NAME-2 … when that folder "
                       "is another file's run). --steps is the step to reach, counted from the file's "
                       "stored step. Ctrl-C saves and stops; --resume RUN_DIR continues exactly where it "
                       "stopped.")
    _add(p, MODEL_OPTIONS)
    _add(p, OPTIONS)
    _add(p, DREAMARTIST_OPTIONS)
    _add(p, RECIPE_OPTIONS)
    p.add_argument("--format", dest="formats", action="append", default=None,
                   choices=["a1111-pt", "a1111-png", "safetensors", "diffusers"],
                   help="output format (repeatable; default a1111-pt and safetensors)")
    p.add_argument("--config", help="TOML file with any of these options (flags override it)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run in its folder (LOG_DIR/NAME) with the "
                   "options of its config.toml; only these may change: "
                   + " ".join(sorted(option_name(f) for f in RESUMABLE)))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# The option tables of TrainConfig's nested sections ([model], [dreamartist], [recipe] in TOML).
SECTIONS = {"model": MODEL_OPTIONS, "dreamartist": DREAMARTIST_OPTIONS, "recipe": RECIPE_OPTIONS}


def _given(args, table) -> dict:
    """The fields of `table`'s options given on the command line."""
    return {dest: getattr(args, dest) for dest, _, _ in table.values() if getattr(args, dest) is not None}


def overrides_from(args) -> dict:
    given = _given(args, OPTIONS)
    if args.formats:
        given["formats"] = tuple(dict.fromkeys(args.formats))
    for section, table in SECTIONS.items():
        values = _given(args, table)
        if values:
            given[section] = values
    if given.get("hypernetwork"):
        given.setdefault("method", "hypernetwork")
    return given


def option_name(field: str) -> str:
    """The flag of a config field ("dreamartist.cfg" -> "--cfg"), for messages."""
    section, _, name = field.rpartition(".")
    table = SECTIONS.get(section, OPTIONS)
    if field == "formats":
        return "--format"
    return next((flag for flag, (dest, _, _) in table.items() if dest == name), f"--{name.replace('_', '-')}")


def _hypernetwork_defaults(data: dict) -> dict:
    """A hypernetwork run's own defaults where neither flag nor file gave one: A1111's learning
    rate 1e-5 (the embedding default 0.005 would wreck the UNet's attention) and the template
    without [name]."""
    from ..hypernetwork.options import DEFAULT_LR

    if data.get("method") != "hypernetwork":
        return data
    return {"lr": DEFAULT_LR, "template": "hypernetwork", **data}


def build_config(args) -> TrainConfig:
    from ..config import from_dict, load_toml, merge
    from ..train.session import config_for_resume, show

    given = overrides_from(args)
    if args.resume:
        if args.config:
            raise TIStudioError(f"--config {args.config} with --resume: a resumed run keeps its own "
                                f"{args.resume}/config.toml; drop --config (flags may still change "
                                "what --resume allows)")
        cfg, changed = config_for_resume(args.resume, given, label=option_name)
        for name, old, new in changed:
            print(f"info: --resume: {option_name(name)} {show(new)} (was {show(old)})", flush=True)
        return cfg
    base = load_toml(args.config) if args.config else {}
    return from_dict(TrainConfig, _hypernetwork_defaults(merge(base, given)), args.config or "command line")


def run(args) -> int:
    from ..train.distributed import launch, launched
    from ..train.speed import quiet_openmp

    quiet_openmp()  # before torch loads
    cfg = build_config(args)
    if cfg.num_processes > 1 and not launched():
        return launch(_own_argv(), cfg.num_processes)
    from ..api import train
    from ..events import Message, StopToken

    main_process = int(os.environ.get("RANK", "0")) == 0
    stop = StopToken()

    def on_signal(signum, frame):  # first Ctrl-C: save and stop after this step; second: abort
        if stop.stopped:
            raise KeyboardInterrupt
        print("\nstopping after this step and saving (Ctrl-C again to abort)...", flush=True)
        stop.stop()

    def on_event(event):
        if isinstance(event, Message):
            print(f"{event.level}: {event.text}", flush=True)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    result = train(cfg, callback=on_event, stop=stop, progress=not args.quiet and main_process,
                   resume=args.resume)
    if not main_process:
        return 0
    print(f"{result.reason} at step {result.step}, last loss {result.last_loss:.4f}")
    for path in result.outputs:
        print(f"saved {path}")
    print(f"run folder: {result.run_dir}")
    # One Ctrl-C (or SIGTERM) saves and stops, a second aborts: both are interruptions, so both exit
    # 130 as shells expect of Ctrl-C; a script tells "saved" from "aborted" by the files, not the status.
    return INTERRUPTED if result.reason == "interrupted" else 0


def _own_argv() -> list[str]:
    """This command line, for the processes launch() starts (they see WORLD_SIZE and join)."""
    argv = sys.argv[1:]
    if "train" not in argv:
        raise TIStudioError("--num-processes works from the command line (`tistudio train ...`); from "
                            "Python, start the processes with accelerate launch or torchrun")
    return argv
