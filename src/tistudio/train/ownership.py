"""Training borrows the caller's model and hands it back as it found it.

Set-up casts the UNet and text encoders to the run's precision, moves them to the device, freezes
them, may switch on gradient checkpointing, channels_last, torch.compile and another attention
processor, and sets torch's global thread count; a hypernetwork run may move the text encoders to
the CPU. A caller that passed its own Components (the web UI shares one model between its tabs)
gets every one of those back when training ends, however it ends.

Nothing is cast back (bf16 -> fp32 would lose the low bits): the caller's own tensors are kept aside
and put back, so values, dtypes, devices and memory formats are exactly the caller's. While a
half-precision run trains, the caller's fp32 weights therefore stay in memory beside the run's copy.
"""
from __future__ import annotations

import contextlib

import torch

from ..models.components import Components

# Plain attributes of a module that set-up changes: train/eval mode, gradient checkpointing
# (diffusers' and transformers' flags and the function they call), torch.compile's wrapper, and
# diffusers' attention processor. Restored on every submodule; removed where they were absent.
_ATTRIBUTES = ("training", "gradient_checkpointing", "_gradient_checkpointing_func", "_compiled_call_impl",
               "processor")
_ABSENT = object()


class _ModuleState:
    """One module tree's tensors (the objects themselves), requires_grad flags and attributes."""

    def __init__(self, module: torch.nn.Module):
        self.entries = []
        for sub in module.modules():
            params = {name: (p, p.data, p.requires_grad, p.grad) for name, p in sub._parameters.items()
                      if p is not None}
            buffers = dict(sub._buffers)
            attributes = {name: vars(sub).get(name, _ABSENT) for name in _ATTRIBUTES}
            self.entries.append((sub, params, buffers, attributes))

    def restore(self) -> None:
        for sub, params, buffers, attributes in self.entries:
            for name, (param, data, requires_grad, grad) in params.items():
                sub._parameters[name] = param
                if param.data is not data:
                    param.data = data
                param.requires_grad_(requires_grad)
                param.grad = grad
            for name, tensor in buffers.items():
                sub._buffers[name] = tensor
            for name, value in attributes.items():
                if value is not _ABSENT:
                    setattr(sub, name, value)
                elif name in vars(sub):
                    delattr(sub, name)


@contextlib.contextmanager
def borrowed(components: Components | None):
    """Training's lifetime: on the way out (also on an error or Ctrl-C) the caller's `components`
    and torch's thread count are as they were on the way in. None: training loads (and owns) its
    model; only the thread count is put back."""
    threads = torch.get_num_threads()
    modules = [] if components is None else [components.unet, components.vae, *components.text_encoders]
    states = [_ModuleState(m) for m in modules]
    try:
        yield
    finally:
        for state in states:
            state.restore()
        torch.set_num_threads(threads)
