"""Each code-generation optimization switched off in turn, on the seed and moons training steps.

    python benchmarks/ablation.py

Reports the median time per training step (scalar backend for seed, numpy for moons) and the
generated line count, with: everything on; fusion of single-use temporaries off
(codegen.FUSE_LIMIT = 1); constant folding and algebraic simplification off (Graph.simplify).
Common-subexpression elimination and the reuse of forward values in the gradient come from
hash-consing and cannot be switched off separately. Timings are reported, never asserted.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402

from exprgrad import codegen, lower  # noqa: E402


@contextlib.contextmanager
def no_fusion() -> Iterator[None]:
    saved = codegen.FUSE_LIMIT
    codegen.FUSE_LIMIT = 1
    try:
        yield
    finally:
        codegen.FUSE_LIMIT = saved


@contextlib.contextmanager
def no_simplification() -> Iterator[None]:
    original = lower._Lowerer.__init__

    def init(self, text: str, filename: str) -> None:  # type: ignore[no-untyped-def]
        original(self, text, filename)
        self.graph.simplify = False

    lower._Lowerer.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        lower._Lowerer.__init__ = original  # type: ignore[method-assign]


def main() -> None:
    variants = {"all on": contextlib.nullcontext, "fusion off": no_fusion,
                "simplification off": no_simplification}
    for workload, contender in (("seed", run.exprgrad_scalar), ("moons", run.exprgrad_numpy)):
        xs, ys = run.load_data(workload)
        params = run.exprgrad.load_source(run.SOURCES[workload][0]).init_params(0)
        print(f"{workload} ({contender.__name__})")
        base = None
        for label, ctx in variants.items():
            with ctx():
                step = contender(workload, params, xs, ys)
                code = codegen.generate(lower.compile_program(run.SOURCES[workload][0]))
                seconds = run.measure(step, 7, 5.0)
            base = base or seconds
            print(f"  {label:<20} {seconds * 1e6:9.1f} us  {seconds / base:5.2f}x   "
                  f"{code.count(chr(10))} scalar lines")


if __name__ == "__main__":
    main()
