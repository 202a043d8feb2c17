"""The built-in MLP against the same network written with a user ``layer`` type.

    python benchmarks/prelude_mlp.py [--sizes 3,4,4,1] [--batch 256]

Issue #19 asked whether ``Neuron``, ``Layer`` and ``MLP`` could be written in the language itself
(a prelude) with generated code as good. This compiles ``net n = MLP(sizes)`` and the same layers
as ``layer Dense(nin, nout)`` networks, checks that they compute the same loss and gradient (the
layer network's weights copied from the built-in one by name), and prints, per backend, the
generated module's and ``f_grad``'s line counts and ``f_grad``'s time (best of 5, process CPU
time), with the ratio built-in / layers (above 1: the layer version is faster). Reported, never
asserted.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from exprgrad.api import compile_source, load_source


def _sources(sizes: list[int]) -> tuple[str, str]:
    builtin = (f"net n = MLP({sizes[0]}, {sizes[1:]})\n\n"
               f"def f(x[{sizes[0]}], y):\n    return (n(x) - y) ** 2\n")
    nets = "".join(f"net l{i} = Dense({a}, {b})\n" for i, (a, b) in
                   enumerate(zip(sizes, sizes[1:])))
    call = "x"
    for i in range(len(sizes) - 1):
        call = f"l{i}({call})"
    layers = ("layer Dense(nin, nout):\n    param w[nout, nin] = uniform(-1, 1)\n"
              "    param b[nout] = uniform(-1, 1)\n    def forward(x[nin]):\n"
              "        return tanh(w @ x + b)\n\n" + nets +
              f"\ndef f(x[{sizes[0]}], y):\n    return ({call}[0] - y) ** 2\n")
    return builtin, layers


def _best(fn: Callable[[], object], calls: int) -> float:
    times = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(calls):
            fn()
        times.append((time.process_time() - start) / calls)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="3,4,4,1", help="nin and the layer sizes (last: 1)")
    parser.add_argument("--batch", type=int, default=256, help="examples per numpy call")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    builtin, layers = _sources(sizes)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, sizes[0]), 0.5
    xs, ys = rng.uniform(-1, 1, (args.batch, sizes[0])), rng.uniform(-1, 1, args.batch)
    print(f"MLP({sizes[0]}, {sizes[1:]}): built-in vs layer Dense")
    for backend in ("python", "numpy"):
        mods = [load_source(text, "m.exg", backend=backend) for text in (builtin, layers)]
        params = mods[0].init_params(0)
        named = mods[0].params_by_name(params)
        copied = mods[1].params_from_names({f"l{i}.{t}": named[f"n.layers.{i}.{t}"]
                                            for i in range(len(sizes) - 1) for t in "wb"})
        if backend == "python":
            runs = [lambda m=m, p=p: m.f_grad(p, list(x), y)
                    for m, p in zip(mods, (params, copied))]
            calls = 20_000
        else:
            runs = [lambda m=m, p=p: m.f_grad(np.array(p), xs, ys)
                    for m, p in zip(mods, (params, copied))]
            calls = 2_000
        first, second = (run() for run in runs)
        assert np.allclose(first[0], second[0], rtol=1e-12), "the two networks differ"
        times = []
        for text, run in zip((builtin, layers), runs):
            code = compile_source(text, "m.exg", backend=backend)
            f_grad = code[code.index("def f_grad("):].split("\n\n\n")[0]
            times.append(_best(run, calls))
            name = "built-in" if text is builtin else "layers"
            print(f"  {backend:7s} {name:9s} module {len(code.splitlines()):6d} lines, f_grad "
                  f"{len(f_grad.splitlines()):5d} lines, {times[-1] * 1e6:9.2f} us")
        print(f"  {backend:7s} built-in / layers time: {times[0] / times[1]:.2f}")


if __name__ == "__main__":
    main()
