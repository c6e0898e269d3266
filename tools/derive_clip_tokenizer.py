"""Derive Hugging Face CLIP tokenizer files (vocab.json, merges.txt) from the BPE list that the
clip-anytorch wheel bundles (clip/bpe_simple_vocab_16e6.txt.gz).

We ship the derived files inside the package so nothing is fetched at run time. Re-run with:
    pip download --no-deps clip-anytorch -d /tmp/clip && python tools/derive_clip_tokenizer.py /tmp/clip/*.whl

The vocabulary order follows CLIP's byte-level BPE: 256 byte symbols, the same with an end-of-word
marker, one entry per merge, then the two special tokens (ids 49406, 49407).
"""
import gzip
import json
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src/tistudio/models/assets/clip_tokenizer"
N_MERGES = 49152 - 256 - 2


def byte_symbols() -> list[str]:
    # Printable bytes map to themselves; the rest are shifted past 255 so every byte has a visible
    # symbol.
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    # Order matters: CLIP lists the printable bytes first, then the shifted ones, in byte order.
    rest = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(rest))]


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read("clip/bpe_simple_vocab_16e6.txt.gz")).decode("utf-8")
    merges = raw.split("\n")[1 : N_MERGES + 1]
    symbols = byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (OUT / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
