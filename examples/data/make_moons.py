"""Write moons.csv: 100 points of the two-moons data set (50 per moon), labels -1 and +1.

Deterministic (random.Random(0)); the same construction as scikit-learn's make_moons with
noise 0.1, written in plain Python so that the repository needs nothing to rebuild it:
    python examples/data/make_moons.py
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path


def make_moons(n: int = 100, noise: float = 0.1, seed: int = 0) -> list[tuple[float, float, float]]:
    rng = random.Random(seed)
    half = n // 2
    rows = []
    for i in range(half):  # the upper moon, label -1
        t = math.pi * i / (half - 1)
        rows.append((math.cos(t) + rng.gauss(0, noise), math.sin(t) + rng.gauss(0, noise), -1.0))
    for i in range(n - half):  # the lower moon, shifted, label +1
        t = math.pi * i / (n - half - 1)
        rows.append((1 - math.cos(t) + rng.gauss(0, noise),
                     0.5 - math.sin(t) + rng.gauss(0, noise), 1.0))
    rng.shuffle(rows)
    return rows


if __name__ == "__main__":
    out = Path(__file__).with_name("moons.csv")
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["x1", "x2", "label"])
        for x1, x2, label in make_moons():
            writer.writerow([f"{x1:.6f}", f"{x2:.6f}", f"{label:.0f}"])
    print(f"wrote {out}")
