"""The one training loop, shared by every objective and model family. It reads top to bottom:
lr for this step (a pure function of it), micro-batches (a pure function of it), loss, backward,
unscale, clip, step, cap (--max-norm); then logs, snapshots and previews. It reads the run's Setup
and steps its TrainState. Everything random comes from generators that are pure functions of the
step or saved with the state, so a resumed run continues exactly."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..data.batches import bucket_batch_at
from ..events import Message, Progress, Saved
from ..hypernetwork.model import Hypernetwork
from ..models.denoiser import noisy_and_target
from ..rng import torch_generator
from . import state as train_state
from .guards import finite
from .health import cap_norms
from .objectives.base import MicroBatch
from .optimizers import set_mode
from .preview import write_preview
from .setup import Setup
from .speed import reuse_freed_memory
from .state import TrainState
from .stops import Stops


@dataclass
class TrainResult:
    step: int
    reason: str
    outputs: list
    last_loss: float
    run_dir: str = ""


def _micro_batch(s: Setup, records, flips, first_position: int) -> MicroBatch:
    c = s.c
    indices = s.cache.variant_indices(records, first_position)  # augmentation variants (data/augment.py)
    latents, noise, t = [], [], []
    for j, (index, flip) in enumerate(zip(indices, flips)):
        # Noise, timestep, latent draw and prompt of one sample depend only on (seed, its place in the
        # sample stream), so batch 4 and 4 accumulated batches of 1 see the same randomness, and
        # resume needs no generator state.
        gen = torch_generator(s.cfg.seed, "sample", first_position + j)
        latent = s.cache.get([index], [flip], gen) * c.vae_scale
        latents.append(latent)
        noise.append(torch.randn(latent.shape, generator=gen))
        t.append(s.recipe.timestep(gen))
        noise[-1] = s.recipe.offset(noise[-1], gen)  # after t: an offset never changes the timestep
    latents, noise, t = torch.cat(latents), torch.cat(noise), torch.cat(t)
    noisy, target = noisy_and_target(s.recipe.noising, latents, noise, t)
    weights = s.cache.weights(list(indices), list(flips))
    # [name] is each sample's concept's embedding (docs/multi-embedding.md), the first one by default.
    names = s.concepts.names_of(records, s.objective.embeddings[0].name)
    prompts = s.prompts.batch(names, [s.cache.records[i].caption for i in indices], first_position,
                              s.concepts.lines_of(records))
    dev = s.device
    return MicroBatch(prompts=prompts, timesteps=t.to(dev), noisy=noisy.to(dev), target=target.to(dev),
                      weights=None if weights is None else weights.to(dev), indices=list(indices),
                      flips=list(flips), pixel_size=s.cache.pixel_size(indices),
                      size_ids=s.cache.size_ids(indices, flips), position=first_position,
                      criterion=s.recipe.criterion)


def _clip(s: Setup) -> None:
    mode, value = s.cfg.clip_grad_mode, s.cfg.clip_grad
    for e in s.objective.embeddings:  # per embedding, so one cannot starve the other of its norm
        if mode == "norm":
            torch.nn.utils.clip_grad_norm_(e.params, value)
        elif mode == "value":
            torch.nn.utils.clip_grad_value_(e.params, value)


def _cap(s: Setup, medians: tuple[float, ...]) -> None:
    """--max-norm: after the optimizer step, so the vectors that train on, are averaged and saved
    never exceed the cap."""
    if s.cfg.max_norm:
        cap_norms(s.objective, medians, s.cfg.max_norm)


def save_point(s: Setup, st: TrainState, final: bool = False) -> list:
    """Snapshot embeddings (run folder), the resumable state, and the loss CSV, all atomically."""
    paths = []
    shown = st.output_vectors()  # the EMA average when there is one
    for e in s.objective.embeddings:
        emb = e.snapshot(st.step, vectors=shown[e.name])
        if not (finite(emb.vectors) and finite(e.params)):  # never save a non-finite vector
            s.callback(Message("warning", f"step {st.step}: {e.name} has non-finite values; not saved"))
            return []
        if not final:  # a hypernetwork has one format, A1111's .pt
            paths += ([s.run.save_hypernetwork(emb)] if isinstance(emb, Hypernetwork)
                      else s.run.save_snapshot(emb, s.cfg.formats))
    if not final:  # a stop's final save is no save point: an uninterrupted run would not remember it
        st.remember()
    # state.pt last: it is the commit point a resume starts from (RELIABILITY.md). A kill before it
    # leaves the previous state, and the resumed run rewrites these snapshots and CSV rows identically.
    s.run.flush_loss()
    train_state.save(s.run.root, st.state_dict())
    if s.cfg.keep_last:  # also at the final save: a kill may have come between a state and its pruning
        s.run.prune_snapshots(s.cfg.keep_last)
    return paths


def run_loop(s: Setup, st: TrainState, progress: bool = True) -> TrainResult:
    with reuse_freed_memory(s.speed.heap_reuse), s.objective.attached():
        return _steps(s, st, progress)


def _steps(s: Setup, st: TrainState, progress: bool) -> TrainResult:
    from tqdm import tqdm

    cfg = s.cfg
    # Epoch items are the concept draws (images x repeats, plus reg draws: data/concepts.py); each
    # item's bucket is its record's, so a micro-batch's records share one (data/batches.py).
    groups = [s.cache.groups[r] for r in s.concepts.records_of(range(len(s.concepts)))]
    step, reason, last_loss = st.step, "completed", float("nan")
    bar = tqdm(total=cfg.steps, initial=step, desc=f"training {', '.join(e.name for e in s.objective.embeddings)}",
               unit="step", disable=not progress, dynamic_ncols=True)
    stops = Stops(s.objective.embeddings)
    started, done_here = time.perf_counter(), 0
    set_mode(st.optimizer, training=True)  # a resumed schedule-free state was saved at its averaged point
    if st.guard.good is None:  # the state a rollback returns to until the first save point (or a resume's)
        st.remember()
    while step < cfg.steps:
        if s.dist.any_stopped(s.stop.stopped):  # every process stops at the same step
            reason = s.stop.reason
            break
        stopped = stops.stopped(step)  # embeddings past their stop_step stay as they are (stops.py)
        lr = s.schedule.lr_at(step)
        if lr is None:
            reason = "schedule-ended"
            break
        lr *= st.guard.lr_scale  # lowered by each rollback (train/guards.py)
        for group in st.optimizer.param_groups:
            group["lr"] = lr * group["lr_weight"]  # every change, so a multiplier is never lost
        plan = bucket_batch_at(step, groups=groups, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
                               seed=cfg.seed, flip=cfg.flip)
        st.optimizer.zero_grad(set_to_none=True)
        losses = []   # on the device until read_step: one device-to-host copy per step
        per_step = cfg.batch_size * cfg.grad_accum
        for m, (items, flips) in enumerate(zip(plan.micro_batches, plan.flips)):
            mb = _micro_batch(s, s.concepts.records_of(items), flips, step * per_step + m * cfg.batch_size)
            mb = s.dist.share(mb)  # this process's samples (all of them when alone)
            # Mean over the whole optimizer batch: each micro-batch carries its share.
            loss = s.recipe.weighted(s.objective.loss(mb), mb.timesteps,
                                     s.concepts.sample_weights(s.cache.records_of(mb.indices))).sum() / per_step
            if m == 0:  # once per optimizer step
                loss = s.recipe.with_regularizer(loss, s.objective)
            (st.scaler.scale(loss) if st.scaler else loss).backward()
            losses.append(loss.detach())
        total, grads_ok = s.dist.reduce([p for e in s.objective.embeddings for p in e.params],
                                        *st.read_step(losses, s.callback))
        stops.drop_grads()
        if st.scaler:
            st.scaler.unscale_(st.optimizer)  # clip the true gradients, not the scaled ones
        if st.admit(step + 1, total, grads_ok, s.callback):  # False: non-finite loss or gradient, step skipped
            s.recipe.before_step(s.objective)
            _clip(s)
            if st.scaler:
                st.scaler.step(st.optimizer)
                st.scaler.update()
            else:
                st.optimizer.step()
            s.recipe.renormalise(s.objective)
            _cap(s, s.medians)
            st.check_vectors(step + 1)
        stops.restore()  # after the step, --norm, --max-norm and any rollback
        step += 1
        st.step = step
        if st.ema is not None:
            st.ema.update([e for e in s.objective.embeddings if e.name not in stopped], step)
        done_here += 1
        last_loss = total
        s.run.log_loss(step, plan.epoch, plan.epoch_step, total, lr)
        seconds = (time.perf_counter() - started) / done_here
        bar.update(1)
        bar.set_postfix(loss=f"{total:.4f}", lr=f"{lr:.2g}")
        s.callback(Progress(step, cfg.steps, total, lr, plan.epoch, plan.epoch_step, seconds,
                            seconds * (cfg.steps - step)))
        previews = bool(cfg.preview_every and step % cfg.preview_every == 0 and s.dist.is_main)
        saves = bool(cfg.save_every and step % cfg.save_every == 0 and s.dist.is_main)
        judged = previews or saves or bool(cfg.val_every and step % cfg.val_every == 0)
        if judged or s.dist.world > 1:  # vectors judged or saved are finite; every process settles alike
            st.settle(s.callback)
            stops.restore()  # a rollback in settle goes back past a stop too
        if judged:  # schedule-free: what is judged and saved is its averaged point (optimizers.set_mode)
            set_mode(st.optimizer, training=False)
        # Hooks before snapshots: the validation's early stop and best files see this step first.
        for hook in s.hooks:
            hook.after_step(step, total, lr)
        if judged:  # what a hook deferred (the health watch) is read before this step's preview or save
            st.settle(s.callback)
        # Previews before the save point: state.pt commits the step, so a kill right after it
        # must not leave the step without its preview (a resume never redoes that step).
        if previews:
            write_preview(s, step, st.output_vectors())
        if saves:
            paths = save_point(s, st)
            s.callback(Saved(step, tuple(map(str, paths))))
        if judged:
            set_mode(st.optimizer, training=True)
    st.settle(s.callback)
    stops.restore()
    bar.close()
    set_mode(st.optimizer, training=False)  # the final files, state.pt and the end hooks: the averaged point
    result = TrainResult(step, reason, [], last_loss, str(s.run.root))
    for hook in s.hooks:
        hook.at_end(result)
    return result

