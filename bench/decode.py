"""Decoding full-resolution films: its share of featurize time, and draft mode's speed and cost.

  python bench/decode.py DATA_DIR [--model InceptionV3] [--rounds 3]

On every JPEG under DATA_DIR (the real dataset's val/ holds 16 originals of 1-2 megapixels),
side by side in one run: the full decode + resize our featurizer does by default, the same
with Pillow's draft mode (libjpeg DCT scaling), and the CNN's forward pass on those films in
float32 and bfloat16. Prints the decode share of featurize time per precision, draft mode's
speed-up, and the cosine between the features of draft-decoded and fully decoded films (the
bar for draft mode as a default: 0.999).
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline.data.images import decode_bytes  # noqa: E402
from pipeline.featurizer.models import build_backbone, get_model  # noqa: E402


def best_seconds(fn, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="folder searched recursively for .jpeg/.jpg")
    p.add_argument("--model", default="InceptionV3")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()
    files = sorted(f for f in args.data.rglob("*") if f.suffix.lower() in (".jpeg", ".jpg"))
    blobs = [f.read_bytes() for f in files]
    spec = get_model(args.model)
    size = spec.input_size

    full = best_seconds(lambda: [decode_bytes(b, size) for b in blobs], args.rounds)
    draft = best_seconds(lambda: [decode_bytes(b, size, draft=True) for b in blobs], args.rounds)
    exact_x = np.stack([decode_bytes(b, size) for b in blobs]).astype(np.float32)
    draft_x = np.stack([decode_bytes(b, size, draft=True) for b in blobs]).astype(np.float32)
    megapixels = np.mean([np.prod(Image.open(io.BytesIO(b)).size) / 1e6 for b in blobs])
    print(f"{len(files)} JPEGs, mean {megapixels:.2f} Mpx, {args.model} at {size} px")
    print(f"decode+resize, full:  {len(files) / full:7.1f} films/s")
    print(f"decode+resize, draft: {len(files) / draft:7.1f} films/s  ({full / draft:.2f}x faster)")
    pixel_diff = np.abs(exact_x - draft_x).mean()
    print(f"mean |pixel difference| draft vs full: {pixel_diff:.2f} grey levels")
    for precision in ("float32", "bfloat16"):
        model = build_backbone(args.model, "none", "avg", args.seed, precision=precision)
        pre = spec.preprocess()
        model.predict_on_batch(pre(exact_x[:2].copy()))  # trace once
        forward = best_seconds(lambda: model.predict_on_batch(pre(exact_x.copy())), args.rounds)
        a = np.asarray(model.predict_on_batch(pre(exact_x.copy()))).astype(np.float32)
        b = np.asarray(model.predict_on_batch(pre(draft_x.copy()))).astype(np.float32)
        cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        print(f"{precision:9s} forward {len(files) / forward:6.1f} films/s; decode share of "
              f"featurize time: full {full / (full + forward):.0%}, draft "
              f"{draft / (draft + forward):.0%}; featurize speed-up with draft "
              f"{(full + forward) / (draft + forward):.2f}x; features draft vs full: cosine min "
              f"{cosine.min():.5f}, mean {cosine.mean():.5f} (default-worthy at >= 0.999)")


if __name__ == "__main__":
    main()
