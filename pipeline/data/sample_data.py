"""A small synthetic ``chest_xray`` tree, so the demo and tests need no download.

``python -m pipeline.data.sample_data OUT [--scale K]`` writes 1-channel JPEGs of mixed sizes whose
file names follow the real dataset's conventions (several films per patient). Pneumonia films
carry bright patchy opacities in the lung fields, a difference even random-init CNN features
can pick up. They are cartoons of radiographs: no result on them says anything clinical.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pipeline.config import SEED
from pipeline.runtime.cli import base_parser, run_job

log = logging.getLogger(__name__)

#: patients per (split, class) at scale 1; each has 1-3 films
PATIENTS = {
    ("train", "NORMAL"): 24, ("train", "PNEUMONIA"): 40,
    ("val", "NORMAL"): 2, ("val", "PNEUMONIA"): 2,
    ("test", "NORMAL"): 10, ("test", "PNEUMONIA"): 14,
}


def film(rng: np.random.Generator, pneumonia: bool) -> Image.Image:
    """One synthetic AP chest film: bright body, two dark lung fields, optional opacities."""
    w, h = int(rng.integers(180, 420)), int(rng.integers(180, 420))
    img = Image.new("L", (w, h), int(rng.integers(150, 190)))
    draw = ImageDraw.Draw(img)
    lungs = []
    for side in (0.28, 0.72):
        cx, cy = side * w, 0.5 * h
        rx, ry = 0.17 * w * rng.uniform(0.9, 1.1), 0.3 * h * rng.uniform(0.9, 1.1)
        lungs.append((cx, cy, rx, ry))
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=int(rng.integers(40, 70)))
    # Opacities: many and dense in pneumonia; a few faint ones (vessels, overlap) in anyone,
    # so the classes overlap as real films do.
    count, brightness = ((int(rng.integers(1, 6)), (75, 140)) if pneumonia
                         else (int(rng.integers(0, 3)), (60, 95)))
    for _ in range(count):
        cx, cy, rx, ry = lungs[int(rng.integers(0, 2))]
        px, py = cx + rng.uniform(-0.6, 0.6) * rx, cy + rng.uniform(-0.6, 0.6) * ry
        r = rng.uniform(0.1, 0.3) * rx
        draw.ellipse((px - r, py - r, px + r, py + r), fill=int(rng.integers(*brightness)))
    img = img.filter(ImageFilter.GaussianBlur(radius=max(w, h) / 90))
    noise = rng.normal(0, 8, (h, w))
    return Image.fromarray(np.clip(np.asarray(img, dtype=float) + noise, 0, 255).astype(np.uint8))


def write_tree(out: Path, scale: int = 1, seed: int = SEED) -> int:
    """Write the tree under ``out/chest_xray``-shaped folders; returns the number of films."""
    rng = np.random.default_rng(seed)
    count = 0
    patient_no = 100
    for (split, cls), patients in PATIENTS.items():
        folder = out / split / cls
        folder.mkdir(parents=True, exist_ok=True)
        for _ in range(patients * scale):
            patient_no += 1
            kind = "bacteria" if rng.random() < 0.6 else "virus"
            for shot in range(1, int(rng.integers(1, 4)) + 1):
                name = (f"IM-{patient_no:04d}-{shot:04d}.jpeg" if cls == "NORMAL"
                        else f"person{patient_no}_{kind}_{patient_no * 10 + shot}.jpeg")
                film(rng, cls == "PNEUMONIA").save(folder / name, quality=90)
                count += 1
    log.info("wrote %d synthetic films under %s", count, out)
    return count


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.split("\n\n")[0], spark=False, prog="python -m pipeline.data.sample_data")
    p.add_argument("out", type=Path, help="folder to create the tree in")
    p.add_argument("--scale", type=int, default=1, help="multiply the patient counts")
    p.add_argument("--seed", type=int, default=SEED)
    return p


def main(args: argparse.Namespace) -> None:
    n = write_tree(args.out, args.scale, args.seed)
    print(f"{n} films written to {args.out}")


if __name__ == "__main__":
    run_job(main, parser())
