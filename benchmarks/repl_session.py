"""The cost of one REPL input against the length of the session (issue #16).

A scripted session of 500 inputs (``python benchmarks/repl_session.py [--inputs N] [--rounds R]``)
in one process: a network, data, and then inputs of the notebook's kinds in turn (a binding that
extends a chain, a network call, an expression printed, a def, a binding that calls that def).
Each input is timed; the script prints the median time of the first ten inputs and of the last
ten over the rounds, and their ratio (about 1 means the cost of an input does not grow with the
session). The peer, measured in the same run, is what the REPL did before: compile the session's
text again for every input (the accumulated declarations plus a def of every variable).
"""

from __future__ import annotations

import argparse
import statistics
import time

from exprgrad.lower.lowering import compile_program
from exprgrad.ui.repl import Session

SETUP = ["net n = MLP(3, [4, 4, 1])", "x = [2.0, 3.0, -1.0]", "c0 = 0.5"]


def inputs(count: int) -> list[str]:
    out = []
    for i in range(1, count + 1):
        kind = i % 5
        if kind == 0:
            out.append(f"c{i} = c{i - 5} * 1.0001 + tanh(c{i - 5})")
        elif kind == 1:
            out.append(f"y{i} = n(x) * {i}")
        elif kind == 2:
            out.append(f"c{i - 2} * 2 + 1")
        elif kind == 3:
            out.append(f"def f{i}(a):\n    return a * a + {i}\n")
        else:
            out.append(f"z{i} = f{i - 1}(c{i - 4}) + y{i - 3}")
    return out


def time_session(lines: list[str]) -> list[float]:
    s = Session(out=lambda _: None, err=lambda text: print(text))
    for k, line in enumerate(SETUP, 1):
        assert s.feed(line, k)
    times = []
    for k, line in enumerate(lines, len(SETUP) + 1):
        start = time.perf_counter()
        assert s.feed(line, k), line
        times.append(time.perf_counter() - start)
    return times


def time_recompiling(lines: list[str]) -> list[float]:
    """The old REPL's way: every input compiles the session's declarations again, with the
    input wrapped in a def of every variable (``x[3]`` for the vector ``x``)."""
    decls = ["net n = MLP(3, [4, 4, 1])"]
    variables = ["x[3]", "c0"]
    times = []
    for line in lines:
        start = time.perf_counter()
        if line.startswith("def "):
            decls.append(line)
            compile_program("\n".join(decls) + "\n", "<repl>")
        else:
            name, _, expr = line.partition(" = ") if " = " in line else ("", "", line)
            wrapper = f"def repl({', '.join(variables)}):\n    return {expr}\n"
            compile_program("\n".join(decls) + "\n" + wrapper, "<repl>")
            if name:
                variables.append(name)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    lines = inputs(args.inputs)
    runs = [time_session(lines) for _ in range(args.rounds)]
    olds = [time_recompiling(lines) for _ in range(args.rounds)]

    def window(all_times: list[list[float]], part: slice) -> float:
        return statistics.median(t for times in all_times for t in times[part])

    for label, data in (("session (IR environment)", runs), ("recompiling the text", olds)):
        first, last = window(data, slice(0, 10)), window(data, slice(-10, None))
        print(f"{label:26s} inputs 1-10: {first * 1e3:8.3f} ms   inputs {args.inputs - 9}-"
              f"{args.inputs}: {last * 1e3:8.3f} ms   last/first {last / first:6.2f}x")


if __name__ == "__main__":
    main()
