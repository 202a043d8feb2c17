"""What the array-API hand-over costs numpy arrays: a numpy module's functions with and without
their twins (``generate_numpy(program, array_api=False)``), timed interleaved.

Each generated numpy function starts with ``if not (type(params) is type(x) is ... is
np.ndarray) and _foreign(...): return <twin>(...)``; its body is otherwise the same text (the
script checks it, up to the numbering of temporaries). For each workload (benchmarks/run.py's
moons and digits, and moons on a batch of one example, where the body is smallest), ``loss_grad``
and the fused ``loss_step`` of ``--copies`` separately built copies of each module are timed in
blocks of ``--block`` seconds, in a new random order each round, on the process CPU clock with
the garbage collector off and BLAS on one thread (as benchmarks/run.py). Reported: the median
time per call of each, the ratio (with twins / without, median and range over the rounds'
ratios) and the difference in nanoseconds. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import run  # noqa: E402  (benchmarks/run.py: the workloads and their data)

from exprgrad.emit.arrays import generate_numpy  # noqa: E402
from exprgrad.emit.load import module_from_code  # noqa: E402
from exprgrad.lower.lowering import compile_program  # noqa: E402


def _body(code: str, name: str) -> list[str]:
    """A function's lines without the hand-over, temporaries' numbers erased."""
    text = re.search(rf"^def {name}\(.*?(?=^def |\Z)", code, re.S | re.M)
    assert text is not None, name
    lines = re.sub(r"\b(_\w*?)\d+\b", r"\1N", text.group(0).rstrip()).splitlines()
    return [line for line in lines if "_foreign(" not in line and "_xp(" not in line]


def calls(workload: str, batch: int | None) -> dict[str, list[Any]]:
    """For each variant ('twins', 'alone'), copies of (loss_grad call, loss_step call)."""
    program = compile_program(run.SOURCES[workload][0], f"{workload}.exg")
    codes = {"twins": generate_numpy(program), "alone": generate_numpy(program, array_api=False)}
    for name in ("loss_grad", "loss_step"):
        assert _body(codes["twins"], name) == _body(codes["alone"], name), name
    xs, ys = run.load_data(workload)
    X, Y = np.asarray(xs[:batch]), np.asarray(ys[:batch])
    out: dict[str, list[Any]] = {}
    lr = run.LEARNING_RATES[workload]
    for variant, code in codes.items():
        out[variant] = []
        for k in range(ARGS.copies):
            mod = module_from_code(code, f"m_{variant}_{k}", f"<{variant}{k}>")
            p = np.asarray(mod.init_params(0))
            out[variant].append((lambda m=mod, p=p: m.loss_grad(p, X, Y),
                                 lambda m=mod, p=p: m.loss_step(p, X, Y, lr)))
    return out


def measure(workload: str, batch: int | None) -> dict[str, Any]:
    variants = calls(workload, batch)
    results = {}
    for which, label in ((0, "loss_grad"), (1, "loss_step")):
        times: dict[str, list[float]] = {v: [] for v in variants}
        ratios = []
        jobs = [(v, copy[which]) for v, copies in variants.items() for copy in copies]
        number = _number(jobs[0][1])
        for _ in range(ARGS.rounds):
            random.shuffle(jobs)
            this: dict[str, list[float]] = {v: [] for v in variants}
            for v, f in jobs:
                t = timeit.Timer(f, timer=time.process_time).timeit(number) / number
                this[v].append(t)
            for v in variants:
                times[v].append(statistics.median(this[v]))
            ratios.append(times["twins"][-1] / times["alone"][-1])
        twins, alone = statistics.median(times["twins"]), statistics.median(times["alone"])
        results[label] = {"twins": twins, "alone": alone, "ratio": statistics.median(ratios),
                          "min": min(ratios), "max": max(ratios),
                          "difference_ns": (twins - alone) * 1e9}
    return results


def _number(f: Any) -> int:
    """Calls in a block of about ARGS.block seconds."""
    n = 1
    while timeit.Timer(f, timer=time.process_time).timeit(n) < ARGS.block / 4:
        n *= 2
    return n * 4


def the_test_alone() -> dict[str, float]:
    """The hand-over's test by itself: a function of three numpy arrays that makes it and
    returns, against one that returns at once (ns per call, medians over interleaved rounds)."""
    program = compile_program(run.SOURCES["moons"][0], "moons.exg")
    code = generate_numpy(program, kinds=("grad",))
    test = re.search(r"\n(    if not .*\n        return .*\n)", code)
    assert test is not None
    namespace: dict[str, Any] = {"np": np}
    exec(compile(code, "<module>", "exec"), namespace)  # noqa: S102 - generated, verified
    exec("def with_test(params, x, y):\n" + test.group(1) + "    return None\n"  # noqa: S102
         "def without(params, x, y):\n    return None\n", namespace)
    p, x, y = np.zeros(337), np.zeros((100, 2)), np.zeros(100)
    fs = {k: (lambda f=namespace[k]: f(p, x, y)) for k in ("with_test", "without")}
    number = 200_000
    times: dict[str, list[float]] = {k: [] for k in fs}
    for _ in range(ARGS.rounds):
        for k in random.sample(list(fs), len(fs)):
            times[k].append(timeit.Timer(fs[k], timer=time.process_time).timeit(number) / number)
    return {k: statistics.median(v) * 1e9 for k, v in times.items()}


def main() -> None:
    from threadpoolctl import threadpool_limits

    alone = the_test_alone()
    print(f"the test alone: {alone['with_test'] - alone['without']:.0f} ns a call "
          f"({alone['with_test']:.0f} ns with it, {alone['without']:.0f} ns without, "
          "three numpy arrays)", flush=True)
    with threadpool_limits(1):
        for workload, batch in (("moons", 1), ("moons", None), ("digits", None)):
            res = measure(workload, batch)
            size = f"{batch} example" if batch else f"{len(run.load_data(workload)[0])} examples"
            for label, r in res.items():
                print(f"{workload:>6} ({size:>13}) {label:<10} with twins "
                      f"{r['twins'] * 1e6:9.2f} us, without {r['alone'] * 1e6:9.2f} us: "
                      f"{r['ratio']:.3f}x [{r['min']:.3f}-{r['max']:.3f}], "
                      f"{r['difference_ns']:+.0f} ns", flush=True)


ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
ap.add_argument("--copies", type=int, default=3, help="separately built copies of each module")
ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
ap.add_argument("--block", type=float, default=0.02, help="seconds of calls in one block")
ARGS = ap.parse_args() if __name__ == "__main__" else ap.parse_args([])

if __name__ == "__main__":
    main()
