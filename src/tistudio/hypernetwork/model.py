"""A hypernetwork as AUTOMATIC1111 defines it (modules/hypernetworks/hypernetwork.py), restated.

For each context width W it holds a pair of modules (one for the keys, one for the values). Each is
a stack of layers of widths W·s[0] -> W·s[1] -> ... -> W·s[-1] for the layer structure s (first and
last 1, e.g. "1, 2, 1"), applied residually: out = x + mlp(x) × strength. After each Linear come,
in this order and only when asked for: the activation (never after the last Linear unless
activate_output), a LayerNorm, a Dropout with the dropout structure's probability for that layer.
The layer order matters beyond behaviour: the file's keys are `linear.<position>.weight/bias`, so an
activation or a LayerNorm shifts the positions of the Linears after it.

Widths: 768 (SD1 text) / 1024 (SD2 text) for cross-attention, 320/640/1280 for the UNet's
self-attention, whose context is the image features themselves.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from ..embedding.embedding import validate_name
from ..errors import TIStudioError
from .options import ACTIVATIONS, INITS

_NUMBERS_RE = re.compile(r"^\s*[-+0-9.eE]+(\s*,\s*[-+0-9.eE]+)*\s*$")


def parse_numbers(text: str, option: str) -> tuple[float, ...]:
    """"1, 2, 1" -> (1.0, 2.0, 1.0), as A1111 splits its text fields."""
    if not _NUMBERS_RE.match(text or ""):
        raise TIStudioError(f"{option} {text!r}: give comma-separated numbers, e.g. \"1, 2, 1\"")
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise TIStudioError(f"{option} {text!r}: give comma-separated numbers, e.g. \"1, 2, 1\"") from None


@dataclass(frozen=True)
class Structure:
    """Everything but the weights; the fields A1111 stores beside them."""

    layer_structure: tuple[float, ...] = (1.0, 2.0, 1.0)
    activation: str = "linear"
    layer_norm: bool = False
    dropout: tuple[float, ...] = ()         # A1111's dropout_structure; () = no dropout anywhere
    weight_init: str = "Normal"             # A1111's stored name (INITS values)
    activate_output: bool = False

    def __post_init__(self):
        s = self.layer_structure
        if len(s) < 2 or s[0] != 1 or s[-1] != 1 or any(not 0 < x < 1e3 for x in s):
            raise TIStudioError(f"--layer-structure {', '.join(f'{x:g}' for x in s)}: must start and end "
                                "with 1 and hold positive multipliers below 1000, e.g. \"1, 2, 1\"")
        if self.activation not in ACTIVATIONS:
            raise TIStudioError(f"--activation {self.activation}: use one of {', '.join(ACTIVATIONS)}")
        if self.weight_init not in INITS.values():
            raise TIStudioError(f"--init {self.weight_init}: use one of {', '.join(INITS)}")
        d = self.dropout
        if d and (len(d) != len(s) or d[0] != 0 or d[-1] != 0 or any(not 0 <= p < 1 for p in d)):
            raise TIStudioError(f"--dropout {', '.join(f'{x:g}' for x in d)}: one probability per layer "
                                f"structure entry ({len(s)}), each 0 <= p < 1, first and last 0, e.g. \"0, 0.3, 0\"")

    @property
    def use_dropout(self) -> bool:
        return any(p > 0 for p in self.dropout)

    def dropout_at(self, i: int) -> float:
        """Dropout after Linear i (0-based): the structure's entry i+1."""
        return self.dropout[i + 1] if self.dropout else 0.0


def legacy_dropout(layer_structure, use_dropout: bool, last_layer_dropout: bool) -> tuple[float, ...]:
    """The dropout structure of files written before A1111 stored one: 0.3 after every Linear but
    the last, the one before last only with last_layer_dropout."""
    n = len(layer_structure)
    if not use_dropout or n < 3:
        return ()
    return (0.0, *[0.3] * (n - 3), 0.3 if last_layer_dropout else 0.0, 0.0)


class HypernetworkModule(torch.nn.Module):
    """One residual MLP; `self.linear` is the Sequential whose state dict the file holds."""

    def __init__(self, width: int, structure: Structure):
        super().__init__()
        s, layers = structure.layer_structure, []
        last = len(s) - 2
        for i in range(len(s) - 1):
            out = int(width * s[i + 1])
            layers.append(torch.nn.Linear(int(width * s[i]), out))
            if structure.activation != "linear" and (i < last or structure.activate_output):
                layers.append(getattr(torch.nn, ACTIVATIONS[structure.activation])())
            if structure.layer_norm:
                layers.append(torch.nn.LayerNorm(out))
            if structure.dropout_at(i) > 0:
                layers.append(torch.nn.Dropout(p=structure.dropout_at(i)))
        self.linear = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        return x + self.linear(x) * strength

    @torch.no_grad()
    def initialise(self, weight_init: str, activation: str, generator: torch.Generator) -> None:
        """A1111's init: Normal = N(0, 0.01) weights and zero biases; Xavier/Kaiming for the Linears
        (Kaiming for the activation's gain); LayerNorms always get N(0, 0.01) weights, as there."""
        gain = "leaky_relu" if activation == "leakyrelu" else "relu"
        init = torch.nn.init
        for layer in self.linear:
            if not isinstance(layer, (torch.nn.Linear, torch.nn.LayerNorm)):
                continue
            w = layer.weight
            if weight_init == "Normal" or isinstance(layer, torch.nn.LayerNorm):
                init.normal_(w, 0.0, 0.01, generator=generator)
            elif weight_init == "XavierUniform":
                init.xavier_uniform_(w, generator=generator)
            elif weight_init == "XavierNormal":
                init.xavier_normal_(w, generator=generator)
            elif weight_init == "KaimingUniform":
                init.kaiming_uniform_(w, nonlinearity=gain, generator=generator)
            else:
                init.kaiming_normal_(w, nonlinearity=gain, generator=generator)
            init.zeros_(layer.bias)


@dataclass
class Hypernetwork:
    """`layers[width]` = ModuleList [k-module, v-module]; widths in file order."""

    name: str
    structure: Structure
    layers: dict[int, torch.nn.ModuleList]
    step: int = 0
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    optional_info: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.layers)

    @property
    def vectors(self) -> tuple[torch.Tensor, ...]:
        """Every weight, in file order: what the training loop's guards check and its state keeps
        (the loop calls any trained tensors "vectors")."""
        return tuple(p for pair in self.layers.values() for p in pair.parameters())

    def modules(self) -> list[torch.nn.Module]:
        return [m for pair in self.layers.values() for m in pair]

    def train(self, mode: bool = True) -> "Hypernetwork":
        """Dropout on (training) or off (previews, validation, generation)."""
        for m in self.modules():
            m.train(mode)
        return self

    def to(self, device) -> "Hypernetwork":
        for pair in self.layers.values():
            pair.to(device)
        return self

    def with_weights(self, tensors, step: int | None = None, name: str | None = None) -> "Hypernetwork":
        """A detached fp32 CPU copy holding `tensors` (file order) instead of its own weights."""
        copy = Hypernetwork(name or self.name, self.structure, build_layers(self.widths, self.structure),
                            self.step if step is None else step, self.sd_checkpoint, self.sd_checkpoint_name,
                            self.optional_info, dict(self.meta))
        with torch.no_grad():
            for mine, value in zip(copy.vectors, tensors, strict=True):
                mine.copy_(value.detach().float().cpu())
        return copy


def build_layers(widths, structure: Structure) -> dict[int, torch.nn.ModuleList]:
    return {int(w): torch.nn.ModuleList([HypernetworkModule(int(w), structure) for _ in range(2)])
            for w in widths}


def create(name: str, widths, structure: Structure = Structure(), seed: int = 0,
           sd_checkpoint: str | None = None, sd_checkpoint_name: str | None = None) -> Hypernetwork:
    """A new hypernetwork with A1111's initialisation, drawn from `seed` (same seed, same weights)."""
    widths = tuple(dict.fromkeys(int(w) for w in widths))
    if not widths or any(w <= 0 for w in widths):
        raise TIStudioError(f"--modules {','.join(map(str, widths))}: give context widths, e.g. 768,320,640,1280")
    layers = build_layers(widths, structure)
    gen = torch.Generator().manual_seed(seed)
    for pair in layers.values():
        for module in pair:
            module.initialise(structure.weight_init, structure.activation, gen)
    return Hypernetwork(validate_name(name), structure, layers, 0, sd_checkpoint, sd_checkpoint_name)
