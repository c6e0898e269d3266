"""Why does DreamArtist score below TI on the toy bench? Re-draw trained DreamArtist pairs (folders
that `tistudio bench fidelity --method dreamartist` or bench/recipe_sweep.py --out wrote) under
other sampling choices, without training again: the negative prompt (NAME-neg alone, as the bench
and the guide use it; each prompt's NAME-neg twin, as training pairs them; none, the positive
against the empty prompt) and the guidance scale. Also the vectors' norms against the
vocabulary's median. Table on screen, JSON in bench/results/dreamartist_probe-*.json.

    PYTHONPATH=src .venv/bin/python bench/dreamartist_probe.py /tmp/sweep/default/teal-star-0 \\
        --guidance 2,5"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from report import machine, save

from tistudio.embedding.formats import load_embedding
from tistudio.models.load import load_model
from tistudio.toy import default_model_path
from tistudio.toy.classifier import fraction_of
from tistudio.toy.concepts import parse_concept
from tistudio.toy.fidelity import NAME
from tistudio.toy.sample import SAMPLE_SEED, draw, sample_prompts
from tistudio.train.health import vocabulary_medians

NEGATIVES = ("name", "twin", "none")


def negatives_for(kind: str, prompts: list[str]) -> list[str]:
    if kind == "twin":
        return [p.replace(NAME, f"{NAME}-neg") for p in prompts]
    return [f"{NAME}-neg" if kind == "name" else ""] * len(prompts)


def probe(folder: Path, c, guidances: list[float], samples: int, medians) -> list[dict]:
    report = json.loads((folder / "fidelity.json").read_text())[0]
    concept = parse_concept(report["concept"])
    seed = SAMPLE_SEED + report["settings"]["seed"]
    emb = folder / "embeddings"
    vectors = {n: load_embedding(emb / f"{n}.pt").vectors for n in (NAME, f"{NAME}-neg")}
    norms = {n: max(float(v.norm(dim=-1).max()) / medians[0] for v in vs) for n, vs in vectors.items()}
    prompts = sample_prompts(NAME, samples)
    rows = []
    for g in guidances:
        base = draw(c, sample_prompts(concept.init_word, samples), [""] * samples, {}, seed=seed, guidance=g)
        row = {"run": str(folder), "concept": concept.spec, "seed": report["settings"]["seed"], "guidance": g,
               "bench_fidelity": report["fidelity"], "baseline": fraction_of(base, concept.colour, concept.shape),
               "pos_norm_ratio": norms[NAME], "neg_norm_ratio": norms[f"{NAME}-neg"]}
        for kind in NEGATIVES:
            images = draw(c, prompts, negatives_for(kind, prompts), vectors, seed=seed, guidance=g)
            row[kind] = fraction_of(images, concept.colour, concept.shape)
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="DreamArtist fidelity run folders")
    parser.add_argument("--guidance", default="2,5", help="comma-separated sampling CFG scales (default 2,5)")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    c = load_model(str(default_model_path()))
    medians = vocabulary_medians(c)
    guidances = [float(g) for g in args.guidance.split(",")]
    rows = [r for f in args.folders for r in probe(Path(f), c, guidances, args.samples, medians)]
    print(f"{'concept':16} {'seed':>4} {'cfg':>4} {'bench':>6} {'-neg':>6} {'twin':>6} {'none':>6} {'base':>6} "
          f"{'|pos|':>6} {'|neg|':>6}")
    for r in rows:
        print(f"{r['concept']:16} {r['seed']:4} {r['guidance']:4g} {r['bench_fidelity']:6.1%} {r['name']:6.1%} "
              f"{r['twin']:6.1%} {r['none']:6.1%} {r['baseline']:6.1%} {r['pos_norm_ratio']:6.1f} "
              f"{r['neg_norm_ratio']:6.1f}")
    print(f"saved {save('dreamartist_probe', {'machine': machine(), 'settings': vars(args), 'rows': rows})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
