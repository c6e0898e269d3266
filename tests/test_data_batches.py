"""The step -> batch plan: a pure function of (seed, step), epochs and epoch_step as documented."""
import os
import subprocess
import sys
from collections import Counter

import pytest

from tistudio.data.batches import batch_at, epoch_flips, epoch_order


def test_epoch_order_is_a_deterministic_permutation():
    a = epoch_order(50, 3, seed=7)
    assert sorted(a) == list(range(50))
    assert a == epoch_order(50, 3, seed=7)
    assert a != epoch_order(50, 4, seed=7) and a != epoch_order(50, 3, seed=8)
    assert epoch_order(1, 0, 0) == [0] and epoch_order(0, 0, 0) == []


@pytest.mark.e2e
def test_epoch_order_is_stable_across_processes():
    code = "from tistudio.data.batches import epoch_order; print(epoch_order(20, 2, 5))"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert outs == {f"{epoch_order(20, 2, 5)}\n"}


def test_steps_walk_the_stream_of_epoch_orders():
    n, bs, ga = 5, 2, 3
    stream = [i for e in range(4) for i in epoch_order(n, e, seed=1)]
    got = []
    for step in range(3):
        plan = batch_at(step, n_items=n, batch_size=bs, grad_accum=ga, seed=1)
        assert len(plan.micro_batches) == ga and all(len(m) == bs for m in plan.micro_batches)
        got += [i for m in plan.micro_batches for i in m]
    assert got == stream[:18]


@pytest.mark.parametrize("step, epoch, epoch_step", [(0, 0, 0), (1, 0, 1), (2, 0, 2), (3, 1, 0),
                                                      (4, 1, 1), (5, 2, 0), (7, 2, 2), (8, 3, 0)])
def test_epoch_and_epoch_step(step, epoch, epoch_step):
    # n=5 items, 2 per step: step 2 runs over the epoch boundary and still counts in epoch 0.
    plan = batch_at(step, n_items=5, batch_size=1, grad_accum=2, seed=0)
    assert (plan.epoch, plan.epoch_step) == (epoch, epoch_step)


def test_every_image_is_seen_equally_and_tiny_datasets_work():
    counts = Counter(i for s in range(6)
                     for m in batch_at(s, n_items=6, batch_size=4, grad_accum=1, seed=3).micro_batches
                     for i in m)
    assert counts == {i: 4 for i in range(6)}
    plan = batch_at(0, n_items=2, batch_size=5, grad_accum=1, seed=3)  # dataset smaller than a batch
    assert Counter(plan.micro_batches[0]) == {0: 3, 1: 2} or Counter(plan.micro_batches[0]) == {0: 2, 1: 3}


def test_flips_are_per_item_per_epoch_and_off_by_default():
    plain = [batch_at(s, n_items=10, batch_size=5, grad_accum=1, seed=2) for s in range(4)]
    assert not any(f for p in plain for m in p.flips for f in m)
    flipped = [batch_at(s, n_items=10, batch_size=5, grad_accum=1, seed=2, flip=True) for s in range(4)]
    assert [p.micro_batches for p in flipped] == [p.micro_batches for p in plain]  # same order
    for plan in flipped:
        table = epoch_flips(10, plan.epoch, seed=2)
        assert plan.flips[0] == tuple(table[i] for i in plan.micro_batches[0])
    assert 5 < sum(f for p in flipped for f in p.flips[0]) < 15


def test_bad_sizes_are_programming_errors():
    with pytest.raises(ValueError):
        batch_at(0, n_items=0, batch_size=1, grad_accum=1, seed=0)


@pytest.mark.e2e
def test_data_package_never_imports_models():
    code = ("import sys, tistudio.data.captions, tistudio.data.templates, tistudio.data.prompts, "
            "tistudio.data.dataset, tistudio.data.latent_cache, tistudio.data.batches; "
            "print(any(m.startswith('tistudio.models') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
