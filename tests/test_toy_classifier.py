"""The toy classifier names colour and shape of generator images, clean and degraded."""
import numpy as np
from PIL import Image, ImageFilter

from tistudio.toy.classifier import accuracy, classify
from tistudio.toy.scenes import BACKGROUNDS, random_scene, render


def _scenes(n, seed):
    rng = np.random.default_rng(seed)
    return [random_scene(rng) for _ in range(n)]


def test_exact_on_clean_images_at_32_and_64_px():
    for size in (32, 64):
        scenes = _scenes(200, size)
        acc = accuracy([render(s, size) for s in scenes], [(s.colour, s.shape) for s in scenes])
        assert acc == {"colour": 1.0, "shape": 1.0, "both": 1.0}


def test_robust_to_blur_and_noise_like_a_small_diffusion_model():
    rng = np.random.default_rng(1)
    scenes = _scenes(200, 2)
    images = []
    for s in scenes:
        blurred = np.asarray(render(s, 32).filter(ImageFilter.GaussianBlur(0.7)), np.float32)
        noisy = np.clip(blurred + rng.normal(0, 10, blurred.shape), 0, 255).astype(np.uint8)
        images.append(Image.fromarray(noisy))
    acc = accuracy(images, [(s.colour, s.shape) for s in scenes])
    assert acc["colour"] == 1.0 and acc["shape"] >= 0.95


def test_blank_image_has_no_object():
    blank = Image.new("RGB", (32, 32), BACKGROUNDS["black"])
    pred = classify(blank)
    assert pred.colour is None and pred.shape is None and not pred.matches("red", "star")


def test_fraction_of_counts_only_exact_matches():
    rng = np.random.default_rng(3)
    images = [render(random_scene(rng, shape="star", colour="teal"), 32) for _ in range(3)]
    images.append(render(random_scene(rng, shape="star", colour="blue"), 32))
    from tistudio.toy.classifier import fraction_of

    assert fraction_of(images, "teal", "star") == 0.75
    assert fraction_of(images, "teal", "circle") == 0.0
