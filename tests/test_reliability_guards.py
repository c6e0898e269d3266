"""Numerical guards (train/guards.py): NaN is injected into the loss or the gradient on chosen steps;
the step is skipped and reported, repeats roll back and halve the LR, non-finite vectors are never
saved, and a resumed run reproduces an uninterrupted one exactly, rollbacks included."""
import csv

import pytest
import torch

from tistudio import api
from tistudio.config import RecipeConfig
from tistudio.embedding.formats import load_embedding
from tistudio.events import Message
from tistudio.train.objectives.ti import TIObjective
from tistudio.train.run import train

from run_config import quick_config


def config(emb, data, root, **kw):
    return quick_config(emb, data, root, **{"steps": 5, "save_every": 1, **kw})


def inject(monkeypatch, steps: set[int], kind: str = "loss", first_step: int = 0):
    """Make the objective's loss (or only its gradient) NaN on the given 1-based optimizer steps.
    Batch 1 without accumulation: the n-th loss call of a run is step first_step + n."""
    real = TIObjective.loss
    calls = {"n": first_step}

    def loss(self, mb):
        calls["n"] += 1
        out = real(self, mb)
        if calls["n"] in steps:
            if kind == "loss":
                return out * float("nan")
            p = self.embeddings[0].params[0]
            # Forward adds exactly 0, backward sends NaN into the vectors' gradient.
            return out + torch.where(torch.zeros_like(p, dtype=torch.bool), p * float("nan"), 0.0).sum()
        return out

    monkeypatch.setattr(TIObjective, "loss", loss)


def snapshot(root, step):
    return load_embedding(root / "runs" / "tok" / "embeddings" / f"tok-{step}.pt").vectors[0]


def rows(root):
    return {int(r["step"]): r for r in csv.DictReader(open(root / "runs" / "tok" / "loss.csv"))}


@pytest.fixture
def emb(tiny_models, tmp_path):
    return api.create_embedding(tiny_models["sd1"], "tok", "cat", 1, tmp_path / "emb")


@pytest.mark.parametrize("kind, text", [("loss", "non-finite loss nan"), ("gradient", "non-finite gradient")])
def test_a_non_finite_step_is_skipped_and_reported(tiny_models, dataset, emb, tmp_path, monkeypatch, kind, text):
    inject(monkeypatch, {3}, kind)
    messages = []
    r = train(config(emb, dataset, tmp_path), components=tiny_models["sd1"], progress=False,
              callback=lambda e: messages.append(e.text) if isinstance(e, Message) else None)
    assert r.step == 5
    assert torch.equal(snapshot(tmp_path, 2), snapshot(tmp_path, 3))      # step 3 changed nothing
    assert not torch.equal(snapshot(tmp_path, 3), snapshot(tmp_path, 4))  # training went on
    assert any(f"step 3: {text}; step skipped (1 in a row" in m for m in messages), messages
    assert not any("rolled back" in m for m in messages)
    assert (rows(tmp_path)[3]["loss"] == "nan") == (kind == "loss")
    final = load_embedding(tmp_path / "out" / "final.pt").vectors[0]
    assert torch.isfinite(final).all()


def test_repeated_non_finite_steps_roll_back_and_halve_the_lr(tiny_models, dataset, emb, tmp_path, monkeypatch):
    inject(monkeypatch, {3, 4, 5})
    messages = []
    train(config(emb, dataset, tmp_path, steps=7, save_every=2), components=tiny_models["sd1"], progress=False,
          callback=lambda e: messages.append(e.text) if isinstance(e, Message) else None)
    rolled = [m for m in messages if "rolled back" in m]
    assert len(rolled) == 1 and rolled[0].startswith("step 5: 3 non-finite steps in a row") and "x0.5" in rolled[0]
    assert torch.equal(snapshot(tmp_path, 2), snapshot(tmp_path, 4))  # skipped steps left it alone
    lrs = {s: float(r["learn_rate"]) for s, r in rows(tmp_path).items()}
    assert [lrs[s] for s in range(1, 8)] == [0.01] * 5 + [0.005] * 2
    state = torch.load(tmp_path / "runs" / "tok" / "state.pt", weights_only=True)
    guard = state["extra"]["guard"]
    assert (guard["lr_scale"], guard["bad_in_row"], guard["skipped"], guard["rollbacks"]) == (0.5, 0, 3, 1)
    assert torch.equal(guard["good"]["vectors"]["tok"][0], snapshot(tmp_path, 6))  # the last save point


def test_rollback_restores_the_last_good_state(tiny_models, dataset, emb, tmp_path, monkeypatch):
    """With no save point yet, the last good state is the run's start: vectors that drifted (a hook
    shifts them at step 2) come back to the initial ones exactly when steps 3-5 are non-finite."""
    from tistudio.train import session as session_mod

    inject(monkeypatch, {3, 4, 5})
    seen = {}
    real_prepare = session_mod.prepare

    def prepare(*a, **kw):
        s, st = real_prepare(*a, **kw)

        class Spy:
            def after_step(self, step, loss, lr):
                if step == 2:
                    with torch.no_grad():
                        s.objective.embeddings[0].params[0].add_(1.0)
                if step == 5:
                    seen["after_rollback"] = s.objective.embeddings[0].params[0].detach().clone()

            def at_end(self, result):
                pass

        s.hooks.append(Spy())
        return s, st

    monkeypatch.setattr("tistudio.train.run.prepare", prepare)
    train(config(emb, dataset, tmp_path, steps=5, save_every=0), components=tiny_models["sd1"], progress=False)
    assert torch.equal(seen["after_rollback"], load_embedding(emb).vectors[0])


def test_non_finite_vectors_are_never_saved(tiny_models, dataset, emb, tmp_path, monkeypatch):
    from tistudio.train import session as session_mod

    real_prepare = session_mod.prepare

    def prepare(*a, **kw):
        s, st = real_prepare(*a, **kw)

        class Poison:  # runs after the guard's check, before the save: only the save check is left
            def after_step(self, step, loss, lr):
                if step == 2:
                    with torch.no_grad():
                        s.objective.embeddings[0].params[0].fill_(float("nan"))

            def at_end(self, result):
                pass

        s.hooks.append(Poison())
        return s, st

    monkeypatch.setattr("tistudio.train.run.prepare", prepare)
    messages = []
    r = train(config(emb, dataset, tmp_path, steps=3, save_every=2), components=tiny_models["sd1"], progress=False,
              callback=lambda e: messages.append(e.text) if isinstance(e, Message) else None)
    assert r.step == 3
    run = tmp_path / "runs" / "tok"
    assert not list(run.glob("embeddings/tok-2.*")) and not (run / "state.pt").exists()
    assert not (tmp_path / "out" / "final.pt").exists()
    assert any("tok has non-finite values; not saved" in m for m in messages)
    assert any("final file not written" in m for m in messages)


def test_resume_after_a_stop_then_a_rollback_is_exact(tiny_models, dataset, emb, tmp_path, monkeypatch):
    """Stopped at step 5 (not a save point), resumed, then steps 6-8 are non-finite: the rollback
    must return to the step-4 save point, as in the uninterrupted run (the target is in state.pt)."""
    c = tiny_models["sd1"]
    nan_steps = {6, 7, 8}
    inject(monkeypatch, nan_steps)
    train(config(emb, dataset, tmp_path / "a", steps=10, save_every=4), components=c, progress=False)
    inject(monkeypatch, nan_steps)
    train(config(emb, dataset, tmp_path / "b", steps=5, save_every=4), components=c, progress=False)
    inject(monkeypatch, nan_steps, first_step=5)
    train(config(emb, dataset, tmp_path / "b", steps=10, save_every=4), components=c, progress=False,
          resume=str(tmp_path / "b" / "runs" / "tok"))
    a = load_embedding(tmp_path / "a" / "out" / "final.pt").vectors[0]
    b = load_embedding(tmp_path / "b" / "out" / "final.pt").vectors[0]
    assert torch.equal(a, b)
    assert [float(rows(tmp_path / "b")[s]["learn_rate"]) for s in (8, 9)] == [0.01, 0.005]


def test_the_guard_reads_the_device_once_per_step_with_the_loss(tiny_models, dataset, emb, tmp_path, monkeypatch):
    """No check of the guard waits for the device on its own: admit and check_vectors read nothing,
    and read_step takes the step's losses (3 accumulated micro-batches), the gradients' verdict and
    the previous step's vectors verdict in one copy; the logged loss is their sum as before."""
    from tistudio.train.state import TrainState

    reads = {"in": None, "admit": 0, "check_vectors": 0, "read_step": 0, "read_step calls": 0}

    def counting(name):
        real = getattr(torch.Tensor, name)

        def read(self, *a, **kw):
            if reads["in"]:
                reads[reads["in"]] += 1
            return real(self, *a, **kw)
        monkeypatch.setattr(torch.Tensor, name, read)

    for name in ("__bool__", "__float__", "__int__", "item", "tolist"):
        counting(name)

    def watched(name):
        real = getattr(TrainState, name)

        def method(self, *a, **kw):
            reads["in"] = name
            if name == "read_step":
                reads["read_step calls"] += 1
            try:
                return real(self, *a, **kw)
            finally:
                reads["in"] = None
        monkeypatch.setattr(TrainState, name, method)

    for name in ("admit", "check_vectors", "read_step"):
        watched(name)
    losses = []
    real_loss = TIObjective.loss
    monkeypatch.setattr(TIObjective, "loss", lambda self, mb: losses.append(real_loss(self, mb)) or losses[-1])
    # A1111's unweighted loss, so loss.csv is the plain mean of the objective's losses
    train(config(emb, dataset, tmp_path, steps=3, grad_accum=3, save_every=0,
                 recipe=RecipeConfig(loss_weighting="none")), components=tiny_models["sd1"], progress=False)
    assert reads["read_step calls"] == 3 and reads["read_step"] == 3  # one copy per step
    assert reads["admit"] == 0 and reads["check_vectors"] == 0
    logged = [float(rows(tmp_path)[s]["loss"]) for s in (1, 2, 3)]
    sums = [sum(float(x.detach().sum()) / 3 for x in losses[3 * k:3 * k + 3]) for k in range(3)]
    assert logged == pytest.approx(sums, rel=1e-6)


def counted_reads(monkeypatch) -> dict:
    """Counts every read of a tensor's value into Python (bool, float, int, item, tolist) from now on."""
    reads = {"n": 0}
    for name in ("__bool__", "__float__", "__int__", "item", "tolist"):
        real = getattr(torch.Tensor, name)

        def read(self, *a, _real=real, **kw):
            reads["n"] += 1
            return _real(self, *a, **kw)
        monkeypatch.setattr(torch.Tensor, name, read)
    return reads


def test_the_health_watch_adds_no_host_read(tiny_models, dataset, emb, tmp_path, monkeypatch):
    """Without --val-every the vector-health watch judges every step, and reads its norms with the
    loss's copy: a run reads the device as often as one whose watch is switched off (before, one
    float() more per step)."""
    from tistudio.train.health import VectorWatch

    def reads_of(root):
        with monkeypatch.context() as m:
            reads = counted_reads(m)
            train(config(emb, dataset, root, steps=4, save_every=0), components=tiny_models["sd1"],
                  progress=False)
        return reads["n"]

    watched = reads_of(tmp_path / "a")
    monkeypatch.setattr(VectorWatch, "watch", lambda self, step: None)
    assert watched == reads_of(tmp_path / "b")


def test_deferred_health_warnings_are_the_same_warnings_before_the_next_step(tiny_models, dataset, emb, tmp_path,
                                                                              monkeypatch):
    """The ratios the watch judges, in step order (patched to rise past 4x, fall and rise again):
    one warning per onset naming its own step, as when it read at once. A step's warning comes
    before the next step's progress; on a save step (3, 6) and the last step before the save; the
    summary's ratio is the last step's."""
    import json

    from tistudio.events import Progress, Saved
    from tistudio.train import health

    ratios = iter([5.0, 1.0, 6.0, 1.0, 1.0, 7.0, 8.0, 9.0])
    monkeypatch.setattr(health, "max_ratio", lambda objective, norms, medians: next(ratios))
    events = []
    train(config(emb, dataset, tmp_path, steps=8, save_every=3), components=tiny_models["sd1"], progress=False,
          callback=events.append)
    warned = [e.text for e in events if isinstance(e, Message) and "vocabulary's median" in e.text]
    assert [w.split(":")[0] for w in warned] == ["step 1", "step 3", "step 6"]
    assert warned[1].startswith("step 3: a vector's norm is 6.0x the vocabulary's median token norm")

    def at(kind, step):
        return next(i for i, e in enumerate(events) if isinstance(e, kind) and e.step == step)
    for step in (1, 3, 6):
        i = next(i for i, e in enumerate(events) if isinstance(e, Message) and e.text.startswith(f"step {step}: a"))
        assert at(Progress, step) < i < at(Progress, step + 1)
        if step % 3 == 0:
            assert i < at(Saved, step)
    summary = json.loads((tmp_path / "runs" / "tok" / "summary.json").read_text())
    assert summary["max_norm_ratio"] == 9.0


def poison_step(monkeypatch, steps: set[int]):
    """Make the optimizer's step leave the vectors NaN on the given 1-based steps (a step with finite
    gradients that still overflows): only check_vectors can see it."""
    from tistudio.train import session as session_mod

    real_prepare = session_mod.prepare

    def prepare(*a, **kw):
        s, st = real_prepare(*a, **kw)
        real_step, calls = st.optimizer.step, {"n": st.step}

        def step(*args, **kwargs):
            out = real_step(*args, **kwargs)
            calls["n"] += 1
            if calls["n"] in steps:
                with torch.no_grad():
                    s.objective.embeddings[0].params[0].fill_(float("nan"))
            return out
        st.optimizer.step = step
        return s, st

    monkeypatch.setattr("tistudio.train.run.prepare", prepare)


@pytest.mark.parametrize("bad, found", [(3, 4), (4, 4), (5, 5)])
def test_vectors_made_non_finite_by_a_step_roll_back_before_they_are_judged_or_saved(
        tiny_models, dataset, emb, tmp_path, monkeypatch, bad, found):
    """Saves at 2 and 4, 5 steps. Step 3's NaN is read with step 4's losses (step 4, computed on it,
    is skipped); step 4's is read before its save, step 5's before the final file: each rolls back
    to the step-2 save point and halves the LR, and nothing non-finite is ever written."""
    poison_step(monkeypatch, {bad})
    messages = []
    r = train(config(emb, dataset, tmp_path, steps=5, save_every=2), components=tiny_models["sd1"], progress=False,
              callback=lambda e: messages.append(e.text) if isinstance(e, Message) else None)
    assert r.step == 5
    rolled = [m for m in messages if "rolled back" in m]
    assert rolled == [f"step {bad}: the vectors became non-finite; rolled back to the last good state and "
                      "lowered the learning rate to x0.5"]
    assert torch.equal(snapshot(tmp_path, 4), snapshot(tmp_path, 2)) == (bad in (3, 4))
    final = load_embedding(tmp_path / "out" / "final.pt").vectors[0]
    assert torch.isfinite(final).all() and torch.isfinite(snapshot(tmp_path, 4)).all()
    if bad == 5:
        assert torch.equal(final, snapshot(tmp_path, 4))  # the last save point, found at the end
    lrs = {s: float(row["learn_rate"]) for s, row in rows(tmp_path).items()}
    assert [lrs[s] for s in range(found + 1, 6)] == [0.005] * (5 - found)
    assert not any("non-finite loss" in m or "non-finite gradient" in m for m in messages)
