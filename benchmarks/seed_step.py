"""The seed network's training step against the careful hand-written one.

    python benchmarks/seed_step.py [--rounds N] [--calls K] [--straight-w1 PATH]

The reference is ``/work/shared/bench/straight_w1.py`` (a fully unrolled SGD step for MLP(3, [4,
4, 1]) on the notebook's four examples, written by hand: one expression per neuron, the update
fused into the gradient). It is read from its path at run time, never copied here. Contenders:
exprgrad's generated ``loss_step_data`` (specialised to the four examples, their numbers written
in: what ``exprgrad train examples/seed_mlp.exg`` runs), ``loss_step_unrolled`` (any batch of
four, taken as arguments like the reference's), ``loss_step`` (the loop over any batch) and,
for scale, ``loss_grad_sum`` followed by a separate update pass (the
training loop before fused steps). As ``../shared/bench/README.md`` asks: each contender's loss
and new parameters are checked against the reference's to 1e-9 first; then they are timed
interleaved in one process, in a random order each round, with process CPU time
(``time.process_time``), K calls per sample, and the ratio of medians is printed with its range
over rounds (reference time / contender time: above 1 means the contender is faster).
Nothing here is a test: timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exprgrad.emit.load import entry_point, module_from_code  # noqa: E402
from exprgrad.emit.scalar import generate  # noqa: E402
from exprgrad.lower.lowering import compile_program  # noqa: E402
from exprgrad.run.training import flat_examples  # noqa: E402

REFERENCE = Path(os.environ.get("EXPRGRAD_STRAIGHT_W1", "/work/shared/bench/straight_w1.py"))
XS = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
YS = [1.0, -1.0, -1.0, 1.0]
LR = 0.04


def contenders(reference: Path) -> tuple[dict[str, Callable[[], Any]], list[float]]:
    spec = importlib.util.spec_from_file_location("straight_w1", reference)
    assert spec and spec.loader
    hand = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hand)
    program = compile_program((ROOT / "examples" / "seed_mlp.exg").read_text(), "seed_mlp.exg")
    data = ("loss", flat_examples([[x, y] for x, y in zip(XS, YS)]))
    module = module_from_code(generate(program, unroll=len(XS), data=data), "seed_step",
                              "<seed_step>")
    params = list(module.init_params(0))
    flat = tuple(v for x in XS for v in x)
    unrolled = entry_point(module, "loss", "step_unrolled")
    specialised = entry_point(module, "loss", "step_data")
    looped = entry_point(module, "loss", "step")
    grad_sum = entry_point(module, "loss", "grad_sum")

    def separate(p: list[float], xs: Any, ys: Any, lr: float) -> tuple[float, list[float]]:
        loss, g = grad_sum(p, xs, ys)
        return loss, [q - lr * d for q, d in zip(p, g)]

    calls = {
        "hand-written (straight_w1)": lambda: hand.step(params, flat, YS, LR),
        "exprgrad loss_step_data": lambda: specialised(params, LR),
        "exprgrad loss_step_unrolled": lambda: unrolled(params, XS, YS, LR),
        "exprgrad loss_step (loop)": lambda: looped(params, XS, YS, LR),
        "exprgrad grad_sum + update": lambda: separate(params, XS, YS, LR),
    }
    return calls, params


def check(calls: dict[str, Callable[[], Any]]) -> None:
    """Every contender's loss and new parameters equal the reference's to 1e-9."""
    want_loss, want = calls["hand-written (straight_w1)"]()
    for name, call in calls.items():
        loss, new = call()
        err = max([abs(loss - want_loss)] + [abs(a - b) for a, b in zip(new, want)])
        if len(new) != len(want) or err > 1e-9:
            raise SystemExit(f"{name} disagrees with the reference (max difference {err:g})")


def measure(calls: dict[str, Callable[[], Any]], rounds: int, k: int) -> dict[str, list[float]]:
    """Seconds per call, one sample per contender per round, interleaved in a random order."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            call = calls[name]
            start = time.process_time()
            for _ in range(k):
                call()
            samples[name].append((time.process_time() - start) / k)
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=41,
                    help="samples per contender, interleaved in a random order (default 41)")
    ap.add_argument("--calls", type=int, default=2000,
                    help="calls timed together as one sample (default 2000)")
    ap.add_argument("--straight-w1", type=Path, default=REFERENCE, dest="reference",
                    help="the hand-written step (default: $EXPRGRAD_STRAIGHT_W1 or "
                    "/work/shared/bench/straight_w1.py, as benchmarks/run.py)")
    args = ap.parse_args()
    if not args.reference.is_file():
        raise SystemExit(f"no reference step at {args.reference}")
    calls, _ = contenders(args.reference)
    check(calls)
    samples = measure(calls, args.rounds, args.calls)
    ref = samples["hand-written (straight_w1)"]
    print(f"seed MLP(3, [4, 4, 1]) x 4 examples, one SGD step; {args.rounds} rounds of "
          f"{args.calls} calls, process CPU time; ratio = hand-written / contender "
          "(above 1: faster than the hand-written step)")
    print(f"{'contender':32} {'median':>10} {'ratio':>7} {'range over rounds':>20}")
    for name, times in samples.items():
        ratios = [r / t for r, t in zip(ref, times)]
        print(f"{name:32} {statistics.median(times) * 1e6:8.2f}us "
              f"{statistics.median(ref) / statistics.median(times):7.3f} "
              f"{min(ratios):9.3f} - {max(ratios):.3f}")


if __name__ == "__main__":
    main()
