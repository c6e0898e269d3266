"""`make demo`: the main job end to end on the shipped toy model, no download.

Teaches an embedding a concept the toy model can draw but was never told the name of (a teal star),
then shows, with a number, that it learned it: the same fidelity benchmark as
`tistudio bench fidelity` (tistudio.toy.fidelity), with previews on. Everything lands in
demo-output/ (git-ignored)."""
from __future__ import annotations

import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

OUT = Path("demo-output")
CONCEPT = "teal star"


def main() -> int:
    from .toy.concepts import parse_concept
    from .toy.fidelity import NAME, FidelitySettings, run_fidelity

    started = time.perf_counter()
    if OUT.exists():  # the demo's own git-ignored folder: every run starts clean
        shutil.rmtree(OUT)
    concept = parse_concept(CONCEPT)
    settings = replace(FidelitySettings(), preview_every=500)
    print(f"TI Studio demo: teach the toy model (src/tistudio/toy/assets/toy-model, 32x32 px) the concept "
          f"{concept.spec!r}.\nIt can draw one, but never saw the words together; the embedding {NAME!r} "
          f"starts from the word {concept.init_word!r} and must learn the colour.\n", flush=True)
    steps = iter(range(1, 5))
    result = run_fidelity(concept, settings, OUT, progress=True,
                          log=lambda m: print(f"[{next(steps, 4)}/4] {m}", flush=True))
    f = result.files
    print(f"\ndone in {time.perf_counter() - started:.0f} s (training {result.train_s:.0f} s, "
          f"{result.steps} steps, final loss {result.final_loss_avg:.4f} moving average)")
    print(f"fidelity: {result.fidelity:.0%} of {result.samples} images of 'a photo of a {NAME}' are "
          f"{concept.spec}s (classifier); the init word {concept.init_word!r} alone: {result.baseline:.0%}")
    print("files:")
    print(f"  training images     {f['data']}/ ({settings.images} PNG + .txt captions)")
    for path in f["embeddings"]:
        if not path.endswith(".optim"):  # the optimizer's side file; `tistudio train` resumes from it
            print(f"  embedding           {path}")
    print(f"  previews            {', '.join(Path(p).name for p in f['previews'])} in {f['run']}/images/")
    print(f"  loss plot           {f['loss_plot']}")
    print(f"  before/after grid   {f['before_after']} (top: '{concept.init_word}', bottom: {NAME}, same seeds)")
    print(f"  scores              {f['json']}")
    print(f"\nuse it: tistudio generate --model src/tistudio/toy/assets/toy-model --embeddings {OUT}/embeddings "
          f"--prompt 'a photo of a {NAME}' --width 32 --height 32 --sampler ddim --cfg 5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
