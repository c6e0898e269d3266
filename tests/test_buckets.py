"""Aspect-ratio buckets (data/buckets.py, docs/buckets.md): the bucket table, where each image goes
and how little of it is cropped, batches that never mix buckets, per-bucket latents, exact resume,
SDXL's true size conditioning reaching the UNet, and --no-buckets keeping the fixed size."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from PIL import Image

from tistudio import api
from tistudio.config import TrainConfig
from tistudio.data.batches import batch_at, bucket_batch_at
from tistudio.data.buckets import bucket_sizes, bucket_table, common_bucket, nearest_bucket, place, plan_buckets
from tistudio.embedding.formats import load_embedding
from tistudio.errors import TIStudioError
from tistudio.train.run import train
from tistudio.train.session import prepare

# At a 128-px training size in steps of 32 (the tiny models' scale of SD's 512 in steps of 64).
SHAPES = {"wide": (192, 128), "tall": (128, 192), "square": (160, 160)}   # 3:2, 2:3, 1:1
BUCKETS = {"wide": (160, 96), "tall": (96, 160), "square": (128, 128)}


@pytest.fixture
def mixed(tmp_path):
    """Six images, two of each shape, each a different colour with a 4-px red border so a crop of
    the edges would show; captioned by file name."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for k, (name, (w, h)) in enumerate(sorted(SHAPES.items()) * 2):
        img = Image.new("RGB", (w, h), (255, 0, 0))
        img.paste(Image.new("RGB", (w - 8, h - 8), (40 * k, 200 - 30 * k, 90)), (4, 4))
        img.save(folder / f"{k}-{name}.png")
    return folder


def config(emb, data, root, **kw) -> TrainConfig:
    base = dict(embedding=str(emb), data=str(data), steps=4, width=128, height=128, bucket_step=32,
                save_every=0, preview_every=0, log_dir=str(root / "runs"), lr="0.02",
                template="subject_filewords", plot=False, output=str(root / "final.pt"))
    return TrainConfig(**{**base, **kw})


def test_bucket_table_keeps_the_area_and_both_orientations():
    sizes = bucket_sizes(512, 512)
    assert (512, 512) in sizes and (640, 384) in sizes and (384, 640) in sizes
    assert all(w * h <= 512 * 512 and w % 64 == 0 and h % 64 == 0 for w, h in sizes)
    assert all((h, w) in sizes for w, h in sizes)
    assert min(min(s) for s in sizes) == 256 and max(max(s) for s in sizes) == 1024  # half .. twice
    sdxl = bucket_sizes(1024, 1024)
    assert {(832, 1216), (896, 1152), (1152, 896), (1216, 832), (1344, 768)} <= set(sdxl)
    assert bucket_sizes(512, 512, min_side=384, max_side=640) == [(384, 640), (448, 576), (512, 512),
                                                                  (576, 448), (640, 384)]


def test_each_image_goes_to_its_nearest_bucket_and_loses_only_the_rounding():
    sizes = bucket_sizes(128, 128, 32)
    for name, size in SHAPES.items():
        bucket = nearest_bucket(size, sizes)
        assert bucket == BUCKETS[name]
        p = place(size, bucket)
        (rw, rh), (top, left) = p.resized, p.crop
        assert rw >= bucket[0] and rh >= bucket[1] and (rw == bucket[0] or rh == bucket[1])  # scaled to cover
        assert (top, left) == ((rh - bucket[1] + 1) // 2, (rw - bucket[0] + 1) // 2) or \
            (top, left) == ((rh - bucket[1]) // 2, (rw - bucket[0]) // 2)              # centred
        # 3:2 in a 5:3 bucket: 1 - 1.5/1.667 = 10% of the height, never the 33% of a square crop
        assert 1 - (bucket[0] * bucket[1]) / (rw * rh) <= 0.105
    assert place((1000, 1000), (128, 128)).crop == (0, 0)


def test_placement_size_ids_mirror_the_crop():
    p = place((300, 100), (160, 96))  # 3:1 into 5:3: scaled to 288x96, 64 px cropped off the sides
    assert p.resized == (288, 96) and p.crop == (0, 64)
    assert p.size_ids() == [100, 300, 0, 64, 96, 160]
    assert p.size_ids(flip=True) == [100, 300, 0, 64, 96, 160]  # centred: same from either edge
    off = type(p)(p.bucket, p.original, p.resized, (0, 10))
    assert off.size_ids(flip=True)[3] == 288 - 160 - 10


def test_plan_is_off_for_one_aspect_and_for_no_buckets(mixed, dataset):
    squares = sorted(dataset.glob("*.png"))
    assert plan_buckets(squares, 64, 64, enabled=None) is None
    assert plan_buckets(sorted(mixed.glob("*.png")), 128, 128, enabled=False, step=32) is None
    placements = plan_buckets(sorted(mixed.glob("*.png")), 128, 128, enabled=None, step=32)
    assert bucket_table(placements) == {"96x160": 2, "128x128": 2, "160x96": 2}
    with pytest.raises(TIStudioError, match="--bucket-step 36: must be a multiple of 8"):
        plan_buckets(squares, 64, 64, enabled=True, step=36)


def test_exif_rotation_decides_the_bucket(tmp_path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    Image.new("RGB", (192, 128), (9, 9, 9)).save(path, exif=exif)
    assert plan_buckets([path], 128, 128, enabled=True, step=32)[0].bucket == (96, 160)


GROUPS = [0, 1, 0, 2, 1, 0, 2]


@pytest.mark.parametrize("bs, ga", [(1, 1), (2, 1), (2, 3), (3, 2)])
def test_bucket_batches_never_mix_buckets_and_are_a_pure_function_of_the_step(bs, ga):
    plans = [bucket_batch_at(k, groups=GROUPS, batch_size=bs, grad_accum=ga, seed=4, flip=True) for k in range(12)]
    assert plans == [bucket_batch_at(k, groups=GROUPS, batch_size=bs, grad_accum=ga, seed=4, flip=True)
                     for k in reversed(range(12))][::-1]  # no state: any order of asking gives the same
    for plan in plans:
        assert len(plan.micro_batches) == ga
        for m in plan.micro_batches:
            assert len(m) == bs and len({GROUPS[i] for i in m}) == 1
    per_epoch = sum(-(-n // bs) for n in Counter(GROUPS).values())
    stream = [m for p in plans for m in p.micro_batches]
    first_epoch = Counter(i for m in stream[:per_epoch] for i in m)
    assert set(first_epoch) == set(range(len(GROUPS)))  # every image in every epoch
    assert stream[:per_epoch] != stream[per_epoch:2 * per_epoch]  # a fresh shuffle per epoch
    for k, plan in enumerate(plans):
        assert plan.epoch == k * ga // per_epoch


def test_one_bucket_batches_exactly_as_before():
    for k in range(6):
        assert bucket_batch_at(k, groups=[0] * 5, batch_size=2, grad_accum=2, seed=1, flip=True) == \
            batch_at(k, n_items=5, batch_size=2, grad_accum=2, seed=1, flip=True)


def test_latents_are_cached_per_bucket_without_cropping_the_edges(tiny_models, mixed, tmp_path):
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    said = []
    s, _ = prepare(config(emb, mixed, tmp_path, latent_sampling="deterministic"), components=c, progress=False,
                   callback=said.append)
    try:
        assert s.cache.table() == {"96x160": 2, "128x128": 2, "160x96": 2}
        assert "buckets (size: images): 96x160: 2, 128x128: 2, 160x96: 2" in [getattr(m, "text", "") for m in said]
        for i, r in enumerate(s.cache.records):
            w, h = BUCKETS[r.path.stem.split("-")[1]]
            assert s.cache.get([i], [False]).shape == (1, 4, h // 8, w // 8)
            assert s.cache.pixel_size([i]) == (h, w)
            pixels = s.cache.pixels(i)
            assert pixels.shape == (3, h, w)
            # The red border survives on the sides the bucket keeps whole: a 3:2 image its width, a
            # 2:3 one its height, a square both (only the 5:3 rounding is cut from the other sides).
            red = torch.tensor([1.0, -1.0, -1.0]).view(3, 1)
            if w >= h:
                assert torch.allclose(pixels[:, h // 2, [0, -1]], red.expand(3, 2), atol=0.1)
            if h >= w:
                assert torch.allclose(pixels[:, [0, -1], w // 2], red.expand(3, 2), atol=0.1)
        with pytest.raises(ValueError, match="mixes buckets"):
            s.cache.get([0, 1], [False, False])
    finally:
        s.lock.release()


@pytest.mark.parametrize("over", [True, False])
def test_auto_latent_cache_weighs_every_variant_mirror_and_bucket(tiny_models, mixed, tmp_path, monkeypatch, over):
    """Six images in three buckets, 3 crop variants each, mirrored, `random` mode (mean and std):
    36 latents of the buckets' sizes, twice, where a count of images saw 12. The cache really holds
    what latent_bytes says, and `auto` goes to disk exactly when that reaches the limit."""
    from tistudio.data import latent_store
    from tistudio.data.bucket_cache import BucketedCache

    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    floats = 2 * (4 * 12 * 20 + 4 * 20 * 12 + 4 * 16 * 16)  # two images per bucket, one view each
    expected = 4 * floats * 3 * 2 * 2  # float32 x variants x mirrors x (mean, std)
    monkeypatch.setattr(latent_store, "AUTO_DISK_BYTES", expected if over else expected + 1)
    cfg = config(emb, mixed, tmp_path, flip=True, random_crop=True, augment_variants=3, latent_sampling="random",
                 latent_cache="auto")
    s, _ = prepare(cfg, components=c, progress=False)
    try:
        held = sum(4 * (part.mean.numel() + part.std.numel()) for part in s.cache.parts)
        placements = plan_buckets([r.path for r in s.cache.images], 128, 128, enabled=None, step=32)
        counted = BucketedCache.latent_bytes(6, placements, width=128, height=128, channels=4, seed=cfg.seed,
                                             augment=(3, True, (0.0,) * 4), flip=True, mode="random")
        assert held == counted == expected
        on_disk = list((tmp_path / "runs" / "tok" / "latents").glob("latents-*.f32"))
        assert bool(on_disk) == over
    finally:
        s.lock.release()


def test_resume_with_buckets_is_exact(tiny_models, mixed, tmp_path):
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 2, tmp_path / "emb")
    kw = dict(flip=True, batch_size=2, latent_sampling="random", shuffle_tags=True)
    train(config(emb, mixed, tmp_path / "a", **kw), components=c, progress=False)
    train(config(emb, mixed, tmp_path / "b", steps=2, **kw), components=c, progress=False)
    train(config(emb, mixed, tmp_path / "b", **kw), components=c, progress=False,
          resume=str(tmp_path / "b" / "runs" / "tok"))
    a, b = (load_embedding(tmp_path / x / "final.pt").vectors[0] for x in "ab")
    assert torch.equal(a, b), (a - b).abs().max()
    summary = json.loads((tmp_path / "b" / "runs" / "tok" / "summary.json").read_text())
    assert summary["buckets"] == {"96x160": 2, "128x128": 2, "160x96": 2}


def test_buckets_on_square_images_train_exactly_as_no_buckets(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 2, tmp_path / "emb")
    kw = dict(width=64, height=64, flip=True, batch_size=2, latent_sampling="random")
    train(config(emb, dataset, tmp_path / "on", buckets=True, **kw), components=c, progress=False)
    train(config(emb, dataset, tmp_path / "off", buckets=False, **kw), components=c, progress=False)
    a, b = (load_embedding(tmp_path / x / "final.pt").vectors[0] for x in ("on", "off"))
    assert torch.equal(a, b)


def test_no_buckets_crops_every_image_to_the_training_size(tiny_models, mixed, tmp_path):
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    s, _ = prepare(config(emb, mixed, tmp_path, buckets=False), components=c, progress=False)
    try:
        assert s.cache.table() == {"128x128": 6} and s.cache.size_ids([0], [False]) is None
        assert all(s.cache.get([i], [False]).shape == (1, 4, 16, 16) for i in range(6))
    finally:
        s.lock.release()


def test_sdxl_receives_each_images_true_size_and_crop(tiny_models, mixed, tmp_path):
    c = tiny_models["sdxl"]
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    seen = []
    # diffusers' SDXL UNet projects the [B, 6] time ids (flattened) in add_time_proj
    handle = c.unet.add_time_proj.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    try:
        train(config(emb, mixed, tmp_path, steps=6, flip=True), components=c, progress=False)
    finally:
        handle.remove()
    rows = {tuple(int(v) for v in ids) for ids in torch.cat(seen).view(-1, 6)}
    expected = set()
    for path in mixed.glob("*.png"):
        name = path.stem.split("-")[1]
        (ow, oh), (bw, bh) = SHAPES[name], BUCKETS[name]
        p = place((ow, oh), (bw, bh))
        expected |= {tuple(p.size_ids()), tuple(p.size_ids(flip=True))}
        assert p.size_ids()[:2] == [oh, ow] and p.size_ids()[4:] == [bh, bw]
    assert rows and rows <= expected
    assert {r[0:2] for r in rows} == {(128, 192), (192, 128), (160, 160)}  # true sizes, not 128x128


def test_validation_on_training_images_in_buckets(tiny_models, mixed, tmp_path):
    from tistudio.train.validation import ValidationSet, ValidationSets

    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    s, _ = prepare(config(emb, mixed, tmp_path, val_every=2, val_timesteps=2), components=c, progress=False)
    try:
        v = ValidationSet.build(s.cfg, s.c, s.cache, "tok", s.prompts.lines, held_out=False,
                                training=s.cache.indices_of(s.concepts.training_indices()))
        assert isinstance(v, ValidationSets) and len(v) == 6 * 2 and not v.held_out
        assert sorted(p.pixel_size for p in v.parts) == [(96, 160), (128, 128), (160, 96)]
        assert all(p.latents.shape[-2:] == (p.pixel_size[0] // 8, p.pixel_size[1] // 8) for p in v.parts)
        args = (s.objective, s.c, s.device, s.cfg.batch_size, (s.height, s.width))
        loss = v.loss(*args)
        assert loss == v.loss(*args) and loss == pytest.approx(sum(p.loss(*args) * len(p) for p in v.parts) / 12)
    finally:
        s.lock.release()


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_held_out_images_are_validated_in_the_training_buckets(tiny_models, mixed, tmp_path, monkeypatch, family):
    """--val-data images go to their nearest bucket of the training run's table (one no training
    image uses: 3:1), are batched per bucket, with their true size ids (which SDXL's UNet takes)."""
    from tistudio.train import report
    from tistudio.train.validation import ValidationSets

    val = tmp_path / "val"
    val.mkdir()
    shapes = {"wide": ((192, 128), (160, 96)), "square": ((160, 160), (128, 128)), "long": ((288, 96), (192, 64))}
    for k, (name, (size, _)) in enumerate(shapes.items()):
        Image.new("RGB", size, (10 + 70 * k, 250 - 60 * k, 30)).save(val / f"v{k}-{name}.png")
    built = []
    real = report.ValidationSet.build

    def spy(*a, **kw):
        built.append(real(*a, **kw))
        return built[-1]

    monkeypatch.setattr(report.ValidationSet, "build", spy)
    c = tiny_models[family]
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    s, _ = prepare(config(emb, mixed, tmp_path, val_data=str(val), val_every=2, val_timesteps=2), components=c,
                   progress=False)
    s.lock.release()
    v = built[0]
    assert isinstance(v, ValidationSets) and v.held_out and len(v) == 3 * 2
    assert sorted(p.pixel_size for p in v.parts) == [(64, 192), (96, 160), (128, 128)]  # (h, w)
    for part in v.parts:
        h, w = part.pixel_size
        assert part.latents.shape == (2, 4, h // 8, w // 8)  # one image x 2 timesteps per bucket here
        (name,) = {n for n, (_, bucket) in shapes.items() if bucket == (w, h)}
        assert part.size_ids.tolist() == [place(shapes[name][0], (w, h)).size_ids()] * 2  # SDXL's ids


def test_previews_are_drawn_at_the_most_common_bucket(tiny_models, mixed, tmp_path):
    """Four wide images of six: previews are 160x96. A --preview-prompts line keeps its own --w/--h;
    a line without has the single preview's options, so 160x96 (without buckets: the training size,
    as the preview tests in test_preview_prompts.py show)."""
    for k in range(2):
        Image.new("RGB", SHAPES["wide"], (20 * k, 90, 200)).save(mixed / f"extra{k}-wide.png")
    (mixed / "0-square.png").unlink()
    (mixed / "1-tall.png").unlink()  # now 4 wide, 1 tall, 1 square
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a [name] --w 64 --h 32\n[name] again\n")
    train(config(emb, mixed, tmp_path, steps=1, preview_every=1, preview_steps=1, preview_prompts=str(prompts)),
          components=c, progress=False)
    with Image.open(tmp_path / "runs" / "tok" / "previews" / "tok-1.png") as image:
        assert image.size == (2 * 160, 96)  # cells as large as the largest: the 160x96 one
        assert image.getpixel((80, 5)) == (0, 0, 0)  # the 64x32 cell is centred in its 160x96 cell
        sizes = [line for line in image.info["parameters"].split(", ") if line.startswith("Size: ")]
        assert sizes == ["Size: 64x32", "Size: 160x96"]


def test_the_preview_bucket_breaks_ties_toward_the_training_aspect():
    wide, tall, square = (place((192, 128), (160, 96)), place((128, 192), (96, 160)),
                          place((160, 160), (128, 128)))
    assert common_bucket([wide, tall, square], 128, 128) == (128, 128)
    assert common_bucket([wide, tall, wide, square], 128, 128) == (160, 96)
    assert common_bucket([wide, tall], 160, 96) == (160, 96)
    assert common_bucket([wide, tall], 96, 160) == (96, 160)


def test_bucket_options_are_checked():
    with pytest.raises(TIStudioError, match="--bucket-step 30"):
        TrainConfig(bucket_step=30)
    with pytest.raises(TIStudioError, match="min <= max"):
        TrainConfig(bucket_min=512, bucket_max=256)


def test_check_shows_what_each_image_trains_at(mixed, capsys):
    from tistudio.cli.main import main

    args = ["check", str(mixed), "--width", "128", "--height", "128", "--bucket-step", "32"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["trained_at"] == {p.name: "{}x{}".format(*BUCKETS[p.stem.split("-")[1]])
                                    for p in sorted(mixed.glob("*.png"))}
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "trains at 160x96 (2): 2-wide.png, 5-wide.png" in table and "aspect-ratio buckets" in table
    assert main([*args, "--no-buckets", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["trained_at"].values()) == {"128x128"}


def test_train_flags_set_the_bucket_fields():
    import argparse

    from tistudio.cli import train as train_cli

    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    given = lambda *argv: train_cli.overrides_from(parser.parse_args(["train", *argv]))  # noqa: E731
    assert given() == {} and given("--no-buckets") == {"buckets": False}
    assert given("--buckets", "--bucket-step", "32", "--bucket-min", "64", "--bucket-max", "256") == {
        "buckets": True, "bucket_step": 32, "bucket_min": 64, "bucket_max": 256}


def test_two_concepts_in_different_buckets_train_and_resume_exactly(tiny_models, mixed, tmp_path):
    """A concept of wide images and one of tall ones (repeats 2, loss weight 0.5, two crop variants
    each): every micro-batch holds one bucket, the concepts' weights reach the loss, and a run
    stopped at step 3 and resumed ends bit-exactly where the uninterrupted one does."""
    from tistudio.config import ConceptConfig
    from tistudio.train.loop import run_loop

    wide, tall = tmp_path / "wide", tmp_path / "tall"
    for folder, shape in ((wide, "wide"), (tall, "tall")):
        folder.mkdir()
        for path in mixed.glob(f"*-{shape}.png"):
            path.rename(folder / path.name)
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 2, tmp_path / "emb")
    kw = dict(concept=(ConceptConfig(path=str(tall), repeats=2, loss_weight=0.5),), steps=6,
              batch_size=2, grad_accum=2, flip=True, random_crop=True, augment_variants=2, latent_sampling="random")

    s, state = prepare(config(emb, wide, tmp_path / "a", **kw), components=c, progress=False)
    seen, plain = [], s.objective.loss

    def spy(mb):
        seen.append((s.cache.pixel_size(mb.indices), s.concepts.sample_weights(s.cache.records_of(mb.indices))))
        return plain(mb)
    s.objective.loss = spy
    try:
        assert s.cache.table() == {"96x160": 2, "160x96": 2} and len(s.concepts) == 6  # 2 wide + 2 tall x 2
        run_loop(s, state, progress=False)
        a = s.objective.embeddings[0].params[0].detach().clone()
    finally:
        s.lock.release()
    assert len(seen) == 6 * 2
    for size, weights in seen:  # one bucket per micro-batch, and its concept's weight
        assert size in ((96, 160), (160, 96))
        assert (weights is None) == (size == (96, 160))
        assert weights is None or weights.tolist() == [0.5, 0.5]

    train(config(emb, wide, tmp_path / "b", **{**kw, "steps": 3}), components=c, progress=False)
    train(config(emb, wide, tmp_path / "b", **kw), components=c, progress=False,
          resume=str(tmp_path / "b" / "runs" / "tok"))
    b = load_embedding(tmp_path / "b" / "final.pt").vectors[0]
    assert torch.equal(a, b), (a - b).abs().max()
    summary = json.loads((tmp_path / "b" / "runs" / "tok" / "summary.json").read_text())
    assert summary["buckets"] == {"96x160": 2, "160x96": 2}


def test_fidelity_samples_are_drawn_at_the_previews_size(tiny_models, mixed, tmp_path, monkeypatch):
    """--eval-clip's images take the previews' size (the most common bucket: 4 wide images of 6 give
    160x96, not the 128x128 training size); --eval-toy's draw at the model's own size, as `tistudio
    bench fidelity` does, so its scores compare with the benchmark's."""
    from tistudio.toy import sample as toy_sample
    from tistudio.train import fidelity

    from test_monitor import tiny_clip

    for k in range(2):
        Image.new("RGB", SHAPES["wide"], (20 * k, 90, 200)).save(mixed / f"extra{k}-wide.png")
    (mixed / "0-square.png").unlink()
    (mixed / "1-tall.png").unlink()  # now 4 wide, 1 tall, 1 square
    drawn = {"clip": [], "toy": []}

    def recording(key, real):
        def sample(c, options, *a, **kw):
            images = real(c, options, *a, **kw)
            drawn[key] += [image.size for image in images]
            return images
        return sample

    monkeypatch.setattr(fidelity, "sample", recording("clip", fidelity.sample))
    monkeypatch.setattr(toy_sample, "sample", recording("toy", toy_sample.sample))
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    api.train(config(emb, mixed, tmp_path, steps=1, val_every=1, eval_clip=str(tiny_clip(tmp_path / "clip")),
                     eval_toy="red square", eval_samples=2, preview_steps=1), components=c, progress=False)
    assert drawn["clip"] == [(160, 96)] * 4  # "a photo of tok" x 2, then two edited prompts
    assert drawn["toy"] == [(c.resolution, c.resolution)] * 2
