"""Where a numpy training step's time goes: each statement of a generated ``f_grad``, timed.

    python benchmarks/profile_step.py F.exg [--dtype float32] [--runs 400] [--top 15]

Compiles the file's training loss with the numpy backend in the given dtype, feeds it the file's
training data (all examples, one batch) and the initial parameters, and runs an instrumented copy
of ``loss_grad`` (a clock reading after every statement). Prints each statement's smallest time
over the runs (the least disturbed by other processes) and its share of their sum. The
instrumented copy is for measuring only; it is never written anywhere. Set
``OPENBLAS_NUM_THREADS=1`` to time the matrix products on one core.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exprgrad.emit.arrays import generate_numpy  # noqa: E402
from exprgrad.emit.load import module_from_code  # noqa: E402
from exprgrad.emit.scalar import generate  # noqa: E402
from exprgrad.lower.lowering import program_of  # noqa: E402
from exprgrad.run.config import config_from_program  # noqa: E402
from exprgrad.run.data import examples_from  # noqa: E402


def profile(path: str, dtype: str, runs: int) -> list[tuple[str, float]]:
    program = program_of(path)
    config = config_from_program(program)
    fn = program.functions[config.loss]
    code = generate_numpy(program, dtype=dtype)
    name = f"def {fn.name}_grad("
    body = code[code.index(name):].split("\n\n\n")[0].splitlines()
    statements = [line.strip() for line in body if line.startswith("    _")]
    out = [body[0], "    _clock.append(_now())"]
    for line in body[1:]:
        out.append(line)
        if line.startswith("    _"):
            out.append("    _clock.append(_now())")
    space = {"np": np, "_now": time.perf_counter, "_clock": []}
    exec("\n".join(out), space)  # noqa: S102 - our own generated code, instrumented
    grad = space[f"{fn.name}_grad"]
    examples = examples_from(program, fn, config, None)
    cols = [np.asarray([ex[i] for ex in examples], dtype) for i in range(len(fn.arg_names))]
    init = module_from_code(generate(program), "init", "<init>").init_params(config.seed)
    params = np.asarray(init, dtype)
    best = np.full(len(statements), np.inf)
    for k in range(runs + runs // 8):
        space["_clock"].clear()
        grad(params, *cols)
        if k >= runs // 8:  # after a warm-up
            best = np.minimum(best, np.diff(space["_clock"]))
    return list(zip(statements, best.tolist()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    rows = profile(args.file, args.dtype, args.runs)
    total = sum(t for _, t in rows)
    for text, t in sorted(rows, key=lambda r: -r[1])[:args.top]:
        print(f"{t * 1e6:9.1f} us {100 * t / total:5.1f}%  {text}")
    print(f"{total * 1e6:9.1f} us in all ({len(rows)} statements, {args.dtype})")


if __name__ == "__main__":
    main()
