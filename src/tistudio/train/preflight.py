"""`tistudio check --config RUN.toml` (or `check DATASET --embedding FILE ...`): what a training run
would refuse or regret, found without loading the model's weights. Per embedding: its file, its
family and vector width against the model's, its trigger, its vectors, which programs load it; for
the run: the refusals `train` makes before it loads anything (embeddings that cannot train together,
nothing left to train, two outputs on one path, a folder it cannot write, a concept naming no
embedding of the run, a template it cannot read); and each concept's folder, through the dataset
doctor. Every rule is the training run's own (session.py, data/concepts.py, Embedding.check_fits,
the config's validation, which refuses a bad config before this runs): this module only gathers
their verdicts, as findings instead of the first one-line error."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

from ..atomic import check_writable
from ..config import TrainConfig
from ..data.concepts import concept_configs, unknown_embeddings
from ..data.dataset import scan_images
from ..data.templates import load_template
from ..embedding.compat import check as compat
from ..embedding.compat_facts import facts, family_of
from ..embedding.formats import load_embedding
from ..embedding.usage import vocabulary_warning, vocabulary_word
from ..errors import TIStudioError
from ..models.load import ModelSource, open_model
from ..models.tokenizer import load_clip_tokenizer
from ..preprocess import DatasetReport, check_dataset
from ..preprocess.doctor import Finding
from .session import MODEL_REQUIRED, check_steps_left, finals, load_trained, not_together


@dataclass(frozen=True)
class EmbeddingFacts:
    """One embedding of the run, as its file and its [[embeddings]] table give it; None: unreadable."""
    path: str
    name: str | None = None           # its trigger
    vectors: int | None = None
    widths: tuple[int, ...] = ()
    family: str | None = None         # sd1 | sd2 | sdxl by its widths (compat_facts.family_of)
    step: int | None = None           # the stored step --steps counts from
    lr_scale: float = 1.0
    stop_step: int = 0
    concepts: tuple[str, ...] = ()    # the concept folders whose [name] is this embedding
    loads_in: dict = field(default_factory=dict)   # client -> loads | partly | refused (embedding/compat.py)


@dataclass(frozen=True)
class RunCheck:
    source: str                       # the --config file, or "command line"
    method: str
    model: str | None
    model_family: str | None
    hypernetwork: str | None          # what a --hypernetwork run trains (it has no embeddings)
    embeddings: tuple[EmbeddingFacts, ...]
    findings: tuple[Finding, ...]
    datasets: tuple[DatasetReport, ...]

    @property
    def usable(self) -> bool:
        return not any(f.level == "error" for f in self.findings) and all(d.usable for d in self.datasets)

    def to_json(self) -> str:
        data = asdict(self)
        data["usable"] = self.usable
        for d, report in zip(data["datasets"], self.datasets):
            d["usable"] = report.usable
        return json.dumps(data, indent=2)

    def table(self) -> str:
        model = f"{self.model} ({self.model_family})" if self.model_family else self.model or "(none)"
        trains = f"hypernetwork {self.hypernetwork}" if self.hypernetwork else f"{len(self.embeddings)} embedding(s)"
        lines = [f"run {self.source}: method {self.method}, model {model}, {trains}"]
        rows = [("EMBEDDING", "TRIGGER", "VECTORS", "FAMILY", "STEP", "LR_SCALE", "STOP", "CONCEPTS")]
        for e in self.embeddings:
            unread = "?" if e.name is None else None
            rows.append((e.path, e.name or "?", unread or str(e.vectors), unread or (e.family or "unknown"),
                         unread or str(e.step), f"{e.lr_scale:g}", str(e.stop_step or "-"),
                         ", ".join(e.concepts) or "-"))
        wide = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        if self.embeddings:
            lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, wide)) + "  " + r[-1] for r in rows]
        for e in self.embeddings:
            if e.loads_in:
                lines.append(f"  {e.name or e.path} loads in: " + ", ".join(
                    f"{client}" + ("" if status == "loads" else f" ({status})") for client, status in e.loads_in.items()))
        lines.append(f"{'LEVEL':<8} {'CHECK':<22} FINDING")
        lines += [f"{f.level:<8} {f.code:<22} {f.message}" for f in self.findings]
        errors = sum(f.level == "error" for f in self.findings)
        for report in self.datasets:
            lines += ["", report.table()]
        lines += ["", f"run: {'ready to train' if self.usable else 'REFUSED or UNUSABLE'}, {errors} run error(s)"]
        return "\n".join(lines)


class _Findings(list):
    def verdict(self, code: str, run: Callable, *args, files: tuple[str, ...] = ()):
        """run(*args) as training would: its one-line refusal becomes an error (None comes back)."""
        try:
            return run(*args)
        except TIStudioError as exc:
            self.append(Finding("error", code, str(exc), files))
            return None


def check_run(cfg: TrainConfig, where: str = "command line", near_distance: int = 6,
              subject: str = "character") -> RunCheck:
    """Check the run `cfg` describes (see the module's docstring), per embedding and per concept.
    `where`: the config's source (the --config file), for the report's first line; `near_distance`,
    `subject`: the dataset doctor's (check_dataset)."""
    found = _Findings()
    source = _model(cfg, found)
    widths = found.verdict("model", source.widths) if source else None
    concepts = found.verdict("data", concept_configs, cfg) or ()
    hyper = cfg.method == "hypernetwork"
    tables = () if hyper else cfg.embedding_tables
    loaded = []
    if hyper or not tables:  # the hypernetwork's file, or "--embedding is required"
        trained = found.verdict("trained", load_trained, cfg) or []
    else:
        loaded = [found.verdict("embedding-file", load_embedding, t.path, files=(t.path,)) for t in tables]
        tokenizer = source.tokenizer() if source else load_clip_tokenizer()
        for t, emb in zip(tables, loaded):
            if emb is not None and widths is not None:
                found.verdict("embedding-width", emb.check_fits, widths, t.path, files=(t.path,))
            if emb is not None and vocabulary_word(tokenizer, emb.name):
                found.append(Finding("warning", "trigger-word", f"{t.path}: {vocabulary_warning(emb.name)}", (t.path,)))
        pairs = [(t.path, e) for t, e in zip(tables, loaded) if e is not None]
        found += [Finding("error", "embeddings-together", line)
                  for line in not_together([e for _, e in pairs], [p for p, _ in pairs])]
        trained = [e for _, e in pairs]
        if len(pairs) == len(tables):  # a concept naming an unreadable file's trigger is that file's fault
            found += [Finding("error", "concept-embedding", line)
                      for line in unknown_embeddings(concepts, [e.name for e in trained])]
    names = [t.name for t in trained]
    if trained:
        found.verdict("steps-left", check_steps_left, cfg, names[0], trained[0].step)
        for path in found.verdict("outputs", finals, cfg, names) or []:
            found.verdict("outputs", check_writable, path)
        found.verdict("run-folder", check_writable, Path(cfg.log_dir) / names[0])
    for template in dict.fromkeys([cfg.template, *(c.template for c in concepts if c.template)]):
        found.verdict("template", load_template, template, not hyper)
    embeddings = tuple(_facts(cfg, t, e, source, concepts) for t, e in zip(tables, loaded))
    side = found.verdict("model", source.resolution) if widths else None
    datasets = _datasets(cfg, concepts, side, names, near_distance, subject, found)
    return RunCheck(where, cfg.method, cfg.model.model, source.family if source else None,
                    cfg.hypernetwork if hyper else None, embeddings, tuple(found), datasets)


def _model(cfg: TrainConfig, found: _Findings) -> ModelSource | None:
    """The run's model, identified from its keys and configs (no weight is read)."""
    m = cfg.model
    if not m.model:
        found.append(Finding("error", "model", MODEL_REQUIRED))
        return None
    return found.verdict("model", open_model, m.model, m.family, m.prediction, m.config)


def _facts(cfg: TrainConfig, table, emb, source: ModelSource | None, concepts) -> EmbeddingFacts:
    if emb is None:
        return EmbeddingFacts(table.path, lr_scale=table.lr_scale, stop_step=table.stop_step)
    first = cfg.embedding_tables[0].path == table.path
    mine = tuple(c.path for c in concepts if c.embedding == emb.name or (first and not c.embedding))
    verdicts = compat(facts(table.path), source.family if source else None)
    return EmbeddingFacts(table.path, emb.name, emb.n_vectors, emb.widths, family_of(emb.widths),
                          emb.step, table.lr_scale, table.stop_step, mine, {v.client: v.status for v in verdicts})


def _datasets(cfg: TrainConfig, concepts, side: int | None, names: list[str], near: int, subject: str,
              found: _Findings) -> tuple[DatasetReport, ...]:
    """Each concept's folder through the dataset doctor, at the run's size (`side`: the model's own,
    for a size the config leaves out) and buckets. The name in captions is looked for only when the
    run trains one embedding: with several, a caption may name triggers on purpose
    (docs/multi-embedding.md), as training's own warning has it."""
    width, height = cfg.width or side or 512, cfg.height or side or 512
    name = names[0] if len(names) == 1 and cfg.method != "hypernetwork" else None
    reports = []
    for c in concepts:
        doctor = partial(check_dataset, width=width, height=height, name=None if c.is_reg else name,
                         near_distance=near, subject=subject, buckets=cfg.buckets, bucket_step=cfg.bucket_step)
        # Training's own refusal of the folder first (none, or no image in it), then the doctor.
        if found.verdict("concept-folder", scan_images, c.path, files=(c.path,)) is not None:
            reports.append(doctor(c.path))
    return tuple(reports)
