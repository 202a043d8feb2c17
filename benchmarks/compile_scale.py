"""Compile time of unrolled loops: examples/lstm.exg over T time steps and examples/rk4.exg over
N steps, each at several sizes.

    python benchmarks/compile_scale.py [--sizes 4 16 64] [--repeats 3]

For each size the example's text is rewritten with the constant substituted (``T = 4`` of the
LSTM, whose sequence shapes are ``xs[T, 1]``, ``N = 4`` of RK4) and its ``data`` and ``train``
statements dropped: with them the module would also hold training steps unrolled over the
file's examples, which grow with the number of examples, not with the loop. Then the text is
compiled as ``exprgrad compile`` does (parse and lower, which unrolls the loops; derive and emit
the Python module) and the script prints, per size: the source's lines (not blank, not
comments), the IR nodes after lowering (the forward graph) and after differentiation (with the
gradients), the generated module's lines, the compile time (the median of ``--repeats`` runs,
each from the text, of ``time.perf_counter`` around the whole pipeline, and of the process's CPU
time, ``time.process_time``, which other processes on a busy machine disturb less) and the
compile time per unrolled step, with its ratio to the largest size's (after one untimed warm-up
compile, which loads the grammar). A ratio that stays near 1 is a compile time
linear in the loop's length. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exprgrad.api import compile_source  # noqa: E402
from exprgrad.emit.scalar import generate  # noqa: E402
from exprgrad.lower.lowering import compile_program  # noqa: E402
from exprgrad.run.training import module_steps  # noqa: E402

EXAMPLES = ROOT / "examples"


def _without_training(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True)
                   if not line.startswith(("data ", "train ")))


def lstm_source(steps: int) -> str:
    """examples/lstm.exg over ``steps`` time steps."""
    text = (EXAMPLES / "lstm.exg").read_text()
    text, count = re.subn(r"^T = 4$", f"T = {steps}", text, flags=re.M)
    assert count == 1, "examples/lstm.exg no longer has T = 4"  # its shapes say xs[T, 1]
    return _without_training(text)


def rk4_source(steps: int) -> str:
    """examples/rk4.exg with ``steps`` RK4 steps."""
    text = (EXAMPLES / "rk4.exg").read_text()
    text, count = re.subn(r"^N = 4$", f"N = {steps}", text, flags=re.M)
    assert count == 1, "examples/rk4.exg no longer has N = 4"
    return _without_training(text)


SOURCES: dict[str, Callable[[int], str]] = {"lstm (T steps)": lstm_source,
                                            "rk4 (N steps)": rk4_source}


@dataclass
class Row:
    example: str
    size: int
    source_lines: int
    forward_nodes: int
    nodes: int
    generated_lines: int
    seconds: float
    cpu_seconds: float

    @property
    def per_step(self) -> float:
        return self.seconds / self.size

    @property
    def cpu_per_step(self) -> float:
        return self.cpu_seconds / self.size


def source_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip() and not line.lstrip()
               .startswith("#"))


def compile_once(text: str, filename: str) -> tuple[float, float, int, int, str]:
    """(seconds, CPU seconds, IR nodes after lowering, IR nodes after differentiation, module
    text): what :func:`exprgrad.api.compile_source` does for the python backend, timed."""
    cpu = time.process_time()
    start = time.perf_counter()
    program = compile_program(text, filename)  # parse, lower (the loops unrolled)
    forward = len(program.graph.nodes)
    steps, unroll, data = module_steps(program)
    code = generate(program, steps=steps, unroll=unroll, data=data)  # derive, emit
    seconds = time.perf_counter() - start
    return seconds, time.process_time() - cpu, forward, len(program.graph.nodes), code


def measure(example: str, size: int, repeats: int) -> Row:
    text = SOURCES[example](size)
    filename = example.split()[0] + ".exg"
    runs = [compile_once(text, filename) for _ in range(repeats)]
    _, _, forward, nodes, code = runs[0]
    assert code == compile_source(text, filename), "the pipeline timed is not compile_source's"
    return Row(example, size, source_lines(text), forward, nodes, len(code.splitlines()),
               statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))


def table(rows: Sequence[Row]) -> str:
    """A markdown table; the ratio column compares each size's time per step with the largest
    size's (of the same example)."""
    largest = {r.example: r for r in rows if r.size == max(s.size for s in rows
                                                           if s.example == r.example)}
    out = ["| example | steps | source lines | IR nodes (forward / with gradients) | "
           "generated lines | compile time (wall / CPU) | per step (wall / CPU) | "
           "per step vs largest (wall / CPU) |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        top = largest[r.example]
        out.append(f"| {r.example} | {r.size} | {r.source_lines} | {r.forward_nodes:,} / "
                   f"{r.nodes:,} | {r.generated_lines:,} | {r.seconds:.2f} s / "
                   f"{r.cpu_seconds:.2f} s | {r.per_step * 1e3:.1f} ms / "
                   f"{r.cpu_per_step * 1e3:.1f} ms | {r.per_step / top.per_step:.2f} / "
                   f"{r.cpu_per_step / top.cpu_per_step:.2f} |")
    return "\n".join(out)


def run(sizes: Sequence[int], repeats: int) -> list[Row]:
    compile_source(rk4_source(1), "warm-up.exg")  # the grammar loaded, first calls made
    return [measure(example, size, repeats) for example in SOURCES for size in sizes]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if any(s < 1 for s in args.sizes) or args.repeats < 1:
        parser.error("sizes and --repeats must be at least 1")
    print(table(run(sorted(set(args.sizes)), args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
