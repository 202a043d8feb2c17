"""Time per training step (forward over the batch, loss, gradient, SGD update) for exprgrad and
the tools a user would pick instead, measured in one run from the same initial weights.

    python benchmarks/run.py [--quick] [--runs R] [--rounds N] [--instances K] [--json OUT.json]
                             [--workloads seed,moons,digits] [--straight-w1 PATH]

Workloads: seed (MLP(3, [4, 4, 1]) on the notebook's 4 examples), moons (MLP(2, [16, 16, 1]) on
100 two-moons points, squared error) and digits (MLP(64, [32, 10]) on scikit-learn's 1,797
digits, tanh hidden layer, softmax cross-entropy). Contenders, each when installed and when it
applies: exprgrad's scalar backend (its fused ``loss_step`` when the generated module has one,
else ``loss_grad_sum`` and an update) and numpy backend (also in float32 when the backend can
emit it), the hand-written straight-line seed step of /work/shared/bench/straight_w1.py (loaded
from there), hand-written Python (seed) and numpy (moons, digits; float64 and float32), the seed
notebook's Value engine (tanh corrected), CasADi (SX compiled to C with gcc on the seed, MX on
the moons), SymPy ``lambdify(cse=True)`` (seed), PyTorch eager on one thread (float64 and
float32) and JAX jit (float64 and float32, in a process of its own).

Method. Before timing, one step of a fresh copy of every contender must give exprgrad's loss and
exprgrad's updated parameters (relative 1e-9 in float64, 1e-4 in float32, against exprgrad's
float64 ``loss_grad_sum`` and update); a contender that does not is reported as FAILED and not
timed. Then ``--instances`` separately built copies of every contender are timed interleaved:
each round times one block (about ``--block`` seconds of steps) of every copy in a new random
order, with ``timeit`` (garbage collector off during a block) on the process CPU clock (the
machine is shared: CPU time does not count the time another process holds the core) and the
wall clock beside it. Everything runs on one thread (PyTorch's setting, BLAS through
threadpoolctl, XLA's flags), so CPU time is the cost of a step. A run is ``--rounds`` rounds;
the whole measurement is repeated ``--runs`` times and each run gives every contender a ratio,
its time over exprgrad's in the same run (> 1: exprgrad is faster). The table shows the median
time, the median ratio and the range of the ratio over the runs. JAX runs in a subprocess of
its own (in a process shared with PyTorch its times are inflated) together with a copy of
exprgrad's baseline backend, and its ratios are against that copy, timed interleaved with it.
Nothing here is a test: timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import importlib.util
import inspect
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import exprgrad  # noqa: E402
from exprgrad.emit.arrays import generate_numpy  # noqa: E402
from exprgrad.emit.load import module_from_code  # noqa: E402
from exprgrad.emit.scalar import generate  # noqa: E402
from exprgrad.lower.lowering import compile_program  # noqa: E402
from exprgrad.run.training import UNROLL_EXAMPLES, flat_examples  # noqa: E402

# The careful hand-written seed step (read-only, outside the repository; see its README).
STRAIGHT_W1 = Path(os.environ.get("EXPRGRAD_STRAIGHT_W1", "/work/shared/bench/straight_w1.py"))

SOURCES = {
    "seed": ("net n = MLP(3, [4, 4, 1])\n"
             "def loss(x[3], y):\n    return (n(x) - y) ** 2\n", (3, [4, 4, 1])),
    "moons": ("net n = MLP(2, [16, 16, 1])\n"
              "def loss(x[2], y):\n    return (n(x) - y) ** 2\n", (2, [16, 16, 1])),
    "digits": ("net n = MLP(64, [32, 10], out=linear)\n"
               "def loss(x[64], y[10]):\n    z = n(x)\n    return logsumexp(z) - dot(y, z)\n",
               (64, [32, 10])),
}
# SGD step size on the summed loss: small enough that the network keeps training over the
# thousands of steps a run takes (digits diverges at 0.01 and its tanh units saturate, which
# would time a different computation than the first step).
LEARNING_RATES = {"seed": 0.01, "moons": 0.01, "digits": 0.001}
LR = 0.01  # kept for callers of the old interface (benchmarks/ablation.py passes lr explicitly)

TOLERANCE = {"float64": 1e-9, "float32": 1e-4}
SLOW = 0.2  # seconds: a contender slower than this per step is timed once a run, one copy


class Unavailable(Exception):
    """The contender is not installed, or does not apply to this workload."""


@dataclass
class Built:
    """One copy of a contender: ``step()`` takes a training step and returns the summed loss
    before the update; ``params()`` gives the current parameters flat, in exprgrad's order."""

    step: Callable[[], float]
    params: Callable[[], list[float]]
    note: str = ""


def load_data(name: str) -> tuple[list[Any], list[Any]]:
    if name == "seed":
        xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
        return xs, [1.0, -1.0, -1.0, 1.0]
    if name == "moons":
        import csv

        with open(ROOT / "examples" / "data" / "moons.csv") as f:
            rows = list(csv.reader(f))[1:]
        return [[float(r[0]), float(r[1])] for r in rows], [float(r[2]) for r in rows]
    from sklearn.datasets import load_digits  # the bundled copy: no download

    digits = load_digits()
    xs = (digits.data / 16.0).tolist()
    ys = [[1.0 if k == t else 0.0 for k in range(10)] for t in digits.target]
    return xs, ys


def layers_from_flat(params: Sequence[float], nin: int, sizes: list[int]
                     ) -> list[tuple[Any, Any]]:
    """(W, b) per layer from the flat vector (per neuron: weights, then bias)."""
    out = []
    pos = 0
    for nout in sizes:
        w, b = [], []
        for _ in range(nout):
            w.append(list(params[pos:pos + nin]))
            b.append(params[pos + nin])
            pos += nin + 1
        out.append((w, b))
        nin = nout
    return out


def flat_from_layers(layers: Sequence[tuple[Any, Any]]) -> list[float]:
    """The inverse of layers_from_flat, for anything numpy can convert (arrays, tensors)."""
    import numpy as np

    return [float(v) for w, b in layers
            for v in np.hstack([np.asarray(w), np.asarray(b)[:, None]]).ravel()]


# ---- contenders -----------------------------------------------------------------------------


def exprgrad_scalar(name: str, params: list[float], xs: list[Any], ys: list[Any],
                    lr: float = LR) -> Built:
    # as `exprgrad train` does: a full batch of at most UNROLL_EXAMPLES goes through the step
    # unrolled for it, a larger one through the step that loops over the batch
    # (the data's numbers written in, as `exprgrad train` does for a file's small data set)
    unroll = len(xs) if len(xs) <= UNROLL_EXAMPLES else 0
    data = ("loss", flat_examples([[x, y] for x, y in zip(xs, ys)])) if unroll else None
    mod = module_from_code(generate(compile_program(SOURCES[name][0], f"{name}.exg"),
                                    unroll=unroll, data=data), "bench_scalar", "<bench>")
    entries = getattr(mod, "ENTRY_POINTS", {}).get("loss", {})
    fused = entries.get("step_unrolled") or entries.get("step")
    state: dict[str, Any] = {"p": list(params)}
    if entries.get("step_data"):
        step_data = getattr(mod, entries["step_data"])  # (params, lr) -> (loss_sum, new_params)

        def step() -> float:
            total, state["p"] = step_data(state["p"], lr)
            return total

        note = f"fused {entries['step_data']}"
    elif fused:
        loss_step = getattr(mod, fused)  # (params, x, y, lr) -> (loss_sum, new_params)

        def step() -> float:
            total, state["p"] = loss_step(state["p"], xs, ys, lr)
            return total

        note = f"fused {fused}"
    else:
        loss_grad_sum = mod.loss_grad_sum  # one loop over the batch in generated code

        def step() -> float:
            p = state["p"]
            total, g = loss_grad_sum(p, xs, ys)
            state["p"] = [q - lr * d for q, d in zip(p, g)]
            return total

        note = "loss_grad_sum + update (no fused step in this exprgrad)"
    return Built(step, lambda: [float(v) for v in state["p"]], note)


def _numpy_module(name: str, dtype: str, array_api: bool = True) -> Any:
    """exprgrad's numpy module for a workload (``array_api=False``: without the array-API
    twins and the hand-over at the top of each function, numpy's code alone)."""
    program = compile_program(SOURCES[name][0], f"{name}.exg")
    wanted = inspect.signature(generate_numpy).parameters
    if not array_api and "array_api" not in wanted:
        raise Unavailable("exprgrad's numpy backend has no array-API twins to leave out yet")
    options: dict[str, Any] = {} if array_api else {"array_api": False}
    if dtype != "float64" and "dtype" not in wanted:
        raise Unavailable("exprgrad's numpy backend has no dtype parameter (generate_numpy) yet")
    if dtype != "float64":
        options["dtype"] = dtype
    try:
        code = generate_numpy(program, **options)
    except (TypeError, ValueError) as err:
        raise Unavailable(f"generate_numpy({options}) refused: {err}") from err
    return module_from_code(code, "bench_np", "<bench>")


def exprgrad_numpy(name: str, params: list[float], xs: list[Any], ys: list[Any],
                   lr: float = LR, dtype: str = "float64", array_api: bool = True) -> Built:
    import numpy as np

    mod = _numpy_module(name, dtype, array_api)
    loss_grad = mod.loss_grad
    X, Y = np.asarray(xs, dtype=dtype), np.asarray(ys, dtype=dtype)
    state = {"p": np.asarray(params, dtype=dtype)}

    def step() -> float:
        values, g = loss_grad(state["p"], X, Y)
        state["p"] -= lr * g
        return float(values.sum())

    return Built(step, lambda: state["p"].tolist())


def exprgrad_numpy_alone(name: str, params: list[float], xs: list[Any], ys: list[Any],
                         lr: float = LR, dtype: str = "float64") -> Built:
    """exprgrad's numpy module without the array-API twins: what the hand-over to them costs
    numpy arrays is exprgrad's time over this one's."""
    if name == "seed":
        raise Unavailable("for the numpy workloads (moons, digits)")
    return exprgrad_numpy(name, params, xs, ys, lr, dtype, array_api=False)


def exprgrad_torch(name: str, params: list[float], xs: list[Any], ys: list[Any],
                   lr: float = LR, dtype: str = "float64") -> Built:
    """The same numpy module's ``loss_grad`` on PyTorch CPU tensors (its array-API twin), an
    in-place update on the tensor: what ``--device torch-cpu`` computes, on one thread."""
    import torch

    if name == "seed":
        raise Unavailable("for the numpy workloads (moons, digits)")
    mod = _numpy_module(name, dtype)
    if not hasattr(mod, "_foreign"):
        raise Unavailable("exprgrad's numpy modules have no array-API twins yet")
    torch.set_num_threads(1)
    tdtype = getattr(torch, dtype)
    X, Y = torch.tensor(xs, dtype=tdtype), torch.tensor(ys, dtype=tdtype)
    state = {"p": torch.tensor(params, dtype=tdtype)}
    loss_grad = mod.loss_grad

    def step() -> float:
        values, g = loss_grad(state["p"], X, Y)
        state["p"] -= lr * g
        return float(values.sum())

    return Built(step, lambda: state["p"].tolist())


def straight_w1(name: str, params: list[float], xs: list[Any], ys: list[Any],
                lr: float = LR) -> Built:
    """/work/shared/bench/straight_w1.py's ``step(params, flat_xs, ys, lr)``, loaded by path."""
    if name != "seed":
        raise Unavailable("written for the seed network only")
    if not STRAIGHT_W1.is_file():
        raise Unavailable(f"{STRAIGHT_W1} is absent")
    spec = importlib.util.spec_from_file_location("straight_w1", STRAIGHT_W1)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = module.step
    _check_straight_order(fn, exprgrad.load_source(SOURCES[name][0], f"{name}.exg").PARAM_NAMES)
    flat_xs = tuple(v for x in xs for v in x)
    ys_t = tuple(ys)
    state: dict[str, Any] = {"p": tuple(params)}

    def step() -> float:
        loss, state["p"] = fn(state["p"], flat_xs, ys_t, lr)
        return loss

    return Built(step, lambda: list(state["p"]))


def _check_straight_order(fn: Callable[..., Any], names: Sequence[str]) -> None:
    """straight_w1 unpacks its parameters into w{layer}_{neuron}_{input} and b{layer}_{neuron}
    (layers from 1); they must come in the order of exprgrad's PARAM_NAMES
    (n.layers.{layer}.neurons.{neuron}.w.{input}, n.layers.{layer}.neurons.{neuron}.b)."""
    expected = []
    for n in names:
        parts = n.split(".")
        layer, neuron = int(parts[2]) + 1, parts[4]
        expected.append(f"w{layer}_{neuron}_{parts[6]}" if parts[5] == "w"
                        else f"b{layer}_{neuron}")
    got = list(fn.__code__.co_varnames[4:4 + len(expected)])  # after params, xs, ys, lr
    if got != expected:
        raise RuntimeError(f"straight_w1's parameter order differs from PARAM_NAMES: {got[:6]}...")


def handwritten_python(name: str, params: list[float], xs: list[Any], ys: list[Any],
                       lr: float = LR) -> Built:
    """MLP(3, [4, 4, 1]) forward and backward written out by hand, one example at a time."""
    if name != "seed":
        raise Unavailable("written for the seed network only")
    tanh = math.tanh
    data = list(zip(xs, ys))
    state = {"p": list(params)}

    def step() -> float:
        p = state["p"]
        g = [0.0] * 41
        total = 0.0
        for (x0, x1, x2), y in data:
            # layer 1: 4 neurons of 3 inputs (params 0..15)
            a0 = tanh(p[0] * x0 + p[1] * x1 + p[2] * x2 + p[3])
            a1 = tanh(p[4] * x0 + p[5] * x1 + p[6] * x2 + p[7])
            a2 = tanh(p[8] * x0 + p[9] * x1 + p[10] * x2 + p[11])
            a3 = tanh(p[12] * x0 + p[13] * x1 + p[14] * x2 + p[15])
            # layer 2: 4 neurons of 4 inputs (params 16..35)
            b0 = tanh(p[16] * a0 + p[17] * a1 + p[18] * a2 + p[19] * a3 + p[20])
            b1 = tanh(p[21] * a0 + p[22] * a1 + p[23] * a2 + p[24] * a3 + p[25])
            b2 = tanh(p[26] * a0 + p[27] * a1 + p[28] * a2 + p[29] * a3 + p[30])
            b3 = tanh(p[31] * a0 + p[32] * a1 + p[33] * a2 + p[34] * a3 + p[35])
            # output neuron (params 36..40)
            o = tanh(p[36] * b0 + p[37] * b1 + p[38] * b2 + p[39] * b3 + p[40])
            d = o - y
            total += d * d
            do = 2.0 * d * (1.0 - o * o)
            g[36] += do * b0
            g[37] += do * b1
            g[38] += do * b2
            g[39] += do * b3
            g[40] += do
            db0 = do * p[36] * (1.0 - b0 * b0)
            db1 = do * p[37] * (1.0 - b1 * b1)
            db2 = do * p[38] * (1.0 - b2 * b2)
            db3 = do * p[39] * (1.0 - b3 * b3)
            g[16] += db0 * a0
            g[17] += db0 * a1
            g[18] += db0 * a2
            g[19] += db0 * a3
            g[20] += db0
            g[21] += db1 * a0
            g[22] += db1 * a1
            g[23] += db1 * a2
            g[24] += db1 * a3
            g[25] += db1
            g[26] += db2 * a0
            g[27] += db2 * a1
            g[28] += db2 * a2
            g[29] += db2 * a3
            g[30] += db2
            g[31] += db3 * a0
            g[32] += db3 * a1
            g[33] += db3 * a2
            g[34] += db3 * a3
            g[35] += db3
            da0 = (db0 * p[16] + db1 * p[21] + db2 * p[26] + db3 * p[31]) * (1.0 - a0 * a0)
            da1 = (db0 * p[17] + db1 * p[22] + db2 * p[27] + db3 * p[32]) * (1.0 - a1 * a1)
            da2 = (db0 * p[18] + db1 * p[23] + db2 * p[28] + db3 * p[33]) * (1.0 - a2 * a2)
            da3 = (db0 * p[19] + db1 * p[24] + db2 * p[29] + db3 * p[34]) * (1.0 - a3 * a3)
            g[0] += da0 * x0
            g[1] += da0 * x1
            g[2] += da0 * x2
            g[3] += da0
            g[4] += da1 * x0
            g[5] += da1 * x1
            g[6] += da1 * x2
            g[7] += da1
            g[8] += da2 * x0
            g[9] += da2 * x1
            g[10] += da2 * x2
            g[11] += da2
            g[12] += da3 * x0
            g[13] += da3 * x1
            g[14] += da3 * x2
            g[15] += da3
        state["p"] = [q - lr * d for q, d in zip(p, g)]
        return total

    return Built(step, lambda: list(state["p"]))


def handwritten_numpy(name: str, params: list[float], xs: list[Any], ys: list[Any],
                      lr: float = LR, dtype: str = "float64") -> Built:
    import numpy as np

    nin, sizes = SOURCES[name][1]
    layers = [(np.asarray(w, dtype=dtype), np.asarray(b, dtype=dtype))
              for w, b in layers_from_flat(params, nin, sizes)]
    X, Y = np.asarray(xs, dtype=dtype), np.asarray(ys, dtype=dtype)
    softmax = name == "digits"

    def step() -> float:
        acts = [X]
        h = X
        for i, (w, b) in enumerate(layers):
            z = h @ w.T + b
            h = z if (softmax and i == len(layers) - 1) else np.tanh(z)
            acts.append(h)
        if softmax:
            m = h.max(axis=1, keepdims=True)
            e = np.exp(h - m)
            s = e.sum(axis=1, keepdims=True)
            loss = float((np.log(s[:, 0]) + m[:, 0] - (Y * h).sum(axis=1)).sum())
            d = e / s - Y
        else:
            diff = h[:, 0] - Y
            loss = float((diff * diff).sum())
            d = (2.0 * diff * (1.0 - h[:, 0] ** 2))[:, None]
        for i in range(len(layers) - 1, -1, -1):
            w, b = layers[i]
            gw = d.T @ acts[i]
            gb = d.sum(axis=0)
            if i:
                d = (d @ w) * (1.0 - acts[i] ** 2)
            w -= lr * gw
            b -= lr * gb
        return loss

    return Built(step, lambda: flat_from_layers(layers))


def seed_engine(name: str, params: list[float], xs: list[Any], ys: list[Any],
                lr: float = LR) -> Built:
    import seed_engine as se

    nin, sizes = SOURCES[name][1]
    if name == "digits":
        raise Unavailable("the Value engine has no log/softmax (and takes minutes per step)")
    net = se.MLP(nin, sizes)
    net.set_parameters(params)
    ps = net.parameters()

    def step() -> float:
        loss = sum(((net(x) - y) ** 2 for x, y in zip(xs, ys)), se.Value(0.0))
        for p in ps:
            p.grad = 0.0
        loss.backward()
        for p in ps:
            p.data -= lr * p.grad
        return loss.data

    return Built(step, lambda: [p.data for p in ps])


# CasADi: the network as a CasADi expression graph (matrix operations on SX or MX symbols),
# differentiated by casadi.gradient, one Function (params, X, Y, lr) -> (loss, new params).
_CASADI_DIR: list[str] = []


def _casadi_step_function(kind: str, name: str, batch: int) -> Any:
    import casadi as ca

    sym = {"SX": ca.SX, "MX": ca.MX}[kind]
    nin, sizes = SOURCES[name][1]
    n = sum((k + 1) * m for k, m in zip([nin] + sizes, sizes))
    p, X, Y, lr = sym.sym("p", n), sym.sym("X", nin, batch), sym.sym("Y", 1, batch), sym.sym("lr")
    h, pos, k = X, 0, nin
    for m in sizes:
        # rows of the (m, k + 1) block are the layer's neurons: weights, then bias
        block = ca.reshape(p[pos:pos + m * (k + 1)], k + 1, m).T
        h = ca.tanh(ca.mtimes(block[:, :k], h) + ca.repmat(block[:, k], 1, batch))
        pos, k = pos + m * (k + 1), m
    loss = ca.sumsqr(h - Y)
    return ca.Function(f"{name}_step", [p, X, Y, lr], [loss, p - lr * ca.gradient(loss, p)])


@functools.cache
def _casadi_compiled(name: str, batch: int) -> Any:
    """The SX step as C (Function.generate through a CodeGenerator), compiled by gcc -O3 into a
    shared library and loaded with casadi.external (CasADi's documented Importer route)."""
    import casadi as ca

    if shutil.which("gcc") is None:
        raise Unavailable("no gcc to compile CasADi's C code")
    f = _casadi_step_function("SX", name, batch)
    if not _CASADI_DIR:
        _CASADI_DIR.append(tempfile.mkdtemp(prefix="exprgrad-bench-casadi-"))
        atexit.register(shutil.rmtree, _CASADI_DIR[0], True)
    cg = ca.CodeGenerator(f"{f.name()}.c")
    cg.add(f)
    path = cg.generate(_CASADI_DIR[0] + os.sep)
    importer = ca.Importer(path, "shell", {"compiler": "gcc", "flags": ["-O3"],
                                           "directory": _CASADI_DIR[0] + os.sep,
                                           "cleanup": False})  # the directory goes at exit
    return ca.external(f.name(), importer)


def casadi_sx_c(name: str, params: list[float], xs: list[Any], ys: list[Any],
                lr: float = LR) -> Built:
    if name != "seed":
        raise Unavailable("the SX (compiled to C) contender runs on the seed")
    import casadi  # noqa: F401  (an ImportError here means: not installed)

    return _casadi_built(_casadi_compiled(name, len(xs)), params, xs, ys, lr)


def casadi_mx(name: str, params: list[float], xs: list[Any], ys: list[Any],
              lr: float = LR) -> Built:
    if name != "moons":
        raise Unavailable("the MX contender runs on the moons")
    import casadi  # noqa: F401

    return _casadi_built(_casadi_step_function("MX", name, len(xs)), params, xs, ys, lr)


def _casadi_built(fn: Any, params: list[float], xs: list[Any], ys: list[Any], lr: float
                  ) -> Built:
    import casadi as ca
    import numpy as np

    X, Y = ca.DM(np.asarray(xs).T), ca.DM(np.asarray([ys]))
    state = {"p": ca.DM(params)}

    def step() -> float:
        loss, state["p"] = fn(state["p"], X, Y, lr)
        return float(loss)

    return Built(step, lambda: np.asarray(state["p"]).ravel().tolist())


@functools.cache
def _sympy_step(name: str) -> Callable[..., Any]:
    """The seed loss built in SymPy over symbols for the parameters and the data, differentiated
    by sympy.diff, and lambdify'd with cse=True into one function of (params, xs, ys, lr)
    returning [loss, *new params]. The outputs are a flat list: with a nested list
    ([loss, [new params]]) lambdify's cse leaves the gradient's repeated subexpressions in
    place and the step is some 60x slower."""
    import sympy as sp

    nin, sizes = SOURCES[name][1]
    xs, _ = load_data(name)
    n = sum((k + 1) * m for k, m in zip([nin] + sizes, sizes))
    p = sp.symbols(f"p0:{n}")
    x = sp.symbols(f"x0:{nin * len(xs)}")
    y = sp.symbols(f"y0:{len(xs)}")
    lr = sp.Symbol("lr")
    loss = sp.Integer(0)
    for e in range(len(xs)):
        h, pos, k = list(x[e * nin:(e + 1) * nin]), 0, nin
        for m in sizes:
            out = []
            for _ in range(m):
                out.append(sp.tanh(sum((p[pos + i] * h[i] for i in range(k)), p[pos + k])))
                pos += k + 1
            h, k = out, m
        loss += (h[0] - y[e]) ** 2
    new = [q - lr * sp.diff(loss, q) for q in p]
    return sp.lambdify([p, x, y, lr], [loss, *new], modules="math", cse=True)


def sympy_lambdify(name: str, params: list[float], xs: list[Any], ys: list[Any],
                   lr: float = LR) -> Built:
    if name != "seed":
        raise Unavailable("an expression per example: built for the seed only")
    fn = _sympy_step(name)
    flat_xs = [v for x in xs for v in x]
    state: dict[str, Any] = {"p": list(params)}

    def step() -> float:
        loss, *state["p"] = fn(state["p"], flat_xs, ys, lr)
        return loss

    return Built(step, lambda: [float(v) for v in state["p"]])


def pytorch_eager(name: str, params: list[float], xs: list[Any], ys: list[Any],
                  lr: float = LR, dtype: str = "float64") -> Built:
    import torch

    torch.set_num_threads(1)
    tdtype = getattr(torch, dtype)
    nin, sizes = SOURCES[name][1]
    tensors = []
    for w, b in layers_from_flat(params, nin, sizes):
        tensors.append(torch.tensor(w, dtype=tdtype, requires_grad=True))
        tensors.append(torch.tensor(b, dtype=tdtype, requires_grad=True))
    X = torch.tensor(xs, dtype=tdtype)
    Y = torch.tensor(ys, dtype=tdtype)
    softmax = name == "digits"

    def step() -> float:
        h = X
        for i in range(0, len(tensors), 2):
            z = h @ tensors[i].T + tensors[i + 1]
            h = z if (softmax and i == len(tensors) - 2) else torch.tanh(z)
        if softmax:
            loss = (torch.logsumexp(h, 1) - (Y * h).sum(1)).sum()
        else:
            loss = ((h[:, 0] - Y) ** 2).sum()
        for t in tensors:
            t.grad = None
        loss.backward()
        with torch.no_grad():
            for t in tensors:
                assert t.grad is not None
                t -= lr * t.grad
        return float(loss.detach())

    def flat() -> list[float]:
        pairs = [(tensors[i].detach().numpy(), tensors[i + 1].detach().numpy())
                 for i in range(0, len(tensors), 2)]
        return flat_from_layers(pairs)

    return Built(step, flat)


def jax_jit(name: str, params: list[float], xs: list[Any], ys: list[Any],
            lr: float = LR, dtype: str = "float64") -> Built:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    nin, sizes = SOURCES[name][1]
    layers = [(jnp.asarray(w, dtype=dtype), jnp.asarray(b, dtype=dtype))
              for w, b in layers_from_flat(params, nin, sizes)]
    X, Y = jnp.asarray(xs, dtype=dtype), jnp.asarray(ys, dtype=dtype)
    softmax = name == "digits"

    def loss_fn(ls: Any) -> Any:
        h = X
        for i, (w, b) in enumerate(ls):
            z = h @ w.T + b
            h = z if (softmax and i == len(ls) - 1) else jnp.tanh(z)
        if softmax:
            return (jax.nn.logsumexp(h, 1) - (Y * h).sum(1)).sum()
        return ((h[:, 0] - Y) ** 2).sum()

    @jax.jit
    def update(ls: Any) -> Any:
        loss, grads = jax.value_and_grad(loss_fn)(ls)
        return loss, [(w - lr * gw, b - lr * gb) for (w, b), (gw, gb) in zip(ls, grads)]

    state = {"l": layers}

    def step() -> float:
        loss, state["l"] = update(state["l"])
        return float(loss)

    return Built(step, lambda: flat_from_layers(state["l"]))


def _float32_only(make: Callable[..., Built]) -> Callable[..., Built]:
    """``make`` in float32, on the batched workloads."""

    def build(name: str, params: list[float], xs: list[Any], ys: list[Any],
              lr: float = LR) -> Built:
        if name == "seed":
            raise Unavailable("float32 rows are for moons and digits")
        return make(name, params, xs, ys, lr, dtype="float32")

    return build


@dataclass(frozen=True)
class Contender:
    label: str
    make: Callable[..., Built]
    dtype: str = "float64"
    own_process: bool = False  # timed in a subprocess of its own (JAX)


EXPRGRAD_SCALAR, EXPRGRAD_NUMPY, EXPRGRAD_NUMPY32 = (
    "exprgrad (scalar)", "exprgrad (numpy)", "exprgrad (numpy, float32)")
CONTENDERS = [
    Contender(EXPRGRAD_SCALAR, exprgrad_scalar),
    Contender(EXPRGRAD_NUMPY, exprgrad_numpy),
    Contender("exprgrad numpy, no array-API twins", exprgrad_numpy_alone),
    Contender("exprgrad twin on PyTorch (1 thread)", exprgrad_torch),
    Contender("straight_w1.py (hand-written)", straight_w1),
    Contender("hand-written Python", handwritten_python),
    Contender("hand-written numpy", handwritten_numpy),
    Contender("seed Value engine", seed_engine),
    Contender("CasADi SX -> C (gcc -O3)", casadi_sx_c),
    Contender("CasADi MX", casadi_mx),
    Contender("SymPy lambdify (cse)", sympy_lambdify),
    Contender("PyTorch eager (1 thread)", pytorch_eager),
    Contender("JAX jit", jax_jit, own_process=True),
    Contender(EXPRGRAD_NUMPY32, _float32_only(exprgrad_numpy), "float32"),
    Contender("exprgrad numpy float32, no twins", _float32_only(exprgrad_numpy_alone),
              "float32"),
    Contender("hand-written numpy float32", _float32_only(handwritten_numpy), "float32"),
    Contender("PyTorch eager float32", _float32_only(pytorch_eager), "float32"),
    Contender("JAX jit float32", _float32_only(jax_jit), "float32", own_process=True),
]
BY_LABEL = {c.label: c for c in CONTENDERS}


# ---- correctness before timing ----------------------------------------------------------------


def reference_step(name: str, params: list[float], xs: list[Any], ys: list[Any], lr: float
                   ) -> tuple[float, list[float]]:
    """exprgrad's float64 loss and updated parameters from loss_grad_sum (not the fused step,
    which is checked like every other contender)."""
    mod = exprgrad.load_source(SOURCES[name][0], f"{name}.exg")
    total, g = mod.loss_grad_sum(params, xs, ys)
    return total, [q - lr * d for q, d in zip(params, g)]


def check(built: Built, ref_loss: float, ref_params: list[float], dtype: str
          ) -> tuple[float, str | None]:
    """One step of ``built``: its loss, and None when the loss and the updated parameters are
    exprgrad's (else what differs)."""
    tol = TOLERANCE[dtype]
    loss = float(built.step())
    if not math.isclose(loss, ref_loss, rel_tol=tol):
        return loss, f"first loss {loss!r}, exprgrad's {ref_loss!r} (tolerance {tol:g})"
    got = built.params()
    if len(got) != len(ref_params):
        return loss, f"{len(got)} parameters, exprgrad has {len(ref_params)}"
    scale = max(abs(v) for v in ref_params)
    for i, (a, b) in enumerate(zip(got, ref_params)):
        if not math.isclose(a, b, rel_tol=tol, abs_tol=tol * scale):
            return loss, f"updated parameter {i} is {a!r}, exprgrad's {b!r} (tolerance {tol:g})"
    return loss, None


def prepare(name: str, labels: Sequence[str], lr: float
            ) -> tuple[dict[str, dict[str, Any]], dict[str, Callable[[], Built]]]:
    """A row per contender (skipped, FAILED its check, or checked) and a maker per checked one."""
    xs, ys = load_data(name)
    params = exprgrad.load_source(SOURCES[name][0], f"{name}.exg").init_params(0)
    ref_loss, ref_params = reference_step(name, params, xs, ys, lr)
    rows: dict[str, dict[str, Any]] = {}
    makers: dict[str, Callable[[], Built]] = {}
    for label in labels:
        contender = BY_LABEL[label]
        make = functools.partial(contender.make, name, params, xs, ys, lr)
        try:
            built = make()
            first, problem = check(built, ref_loss, ref_params, contender.dtype)
        except (ImportError, Unavailable) as err:
            rows[label] = {"skipped": str(err).splitlines()[0]}
            continue
        except Exception as err:  # a contender that breaks is reported, not hidden
            problem = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if problem:
            rows[label] = {"failed": problem}
            continue
        rows[label] = {"dtype": contender.dtype, "first_loss": first,
                       "reference_loss": ref_loss}
        if built.note:
            rows[label]["note"] = built.note
        makers[label] = make
    return rows, makers


# ---- timing -------------------------------------------------------------------------------------


@dataclass
class Timing:
    """Seconds per step, one entry per run: median over the run's rounds, then over copies."""

    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)


def measure(makers: dict[str, Callable[[], Built]], *, runs: int, rounds: int, instances: int,
            block: float, budget: float, progress: str = "") -> dict[str, Timing]:
    """Time ``instances`` copies of every contender interleaved, ``runs`` times.

    Every copy gets a block size worth about ``block`` seconds of steps and two blocks of
    warm-up. A run is up to ``rounds`` rounds (at least two, then until ``budget`` seconds have
    passed); a round times one block of every copy, in a new random order (no contender always
    runs right after the same other one, and a slow drift of the machine's speed affects all
    alike). A block is timed by ``timeit`` on the process CPU clock, with the wall clock around
    it. A contender slower than SLOW per step has one copy, timed once a run.
    """
    timers: dict[tuple[str, int], tuple[timeit.Timer, int]] = {}
    slow: set[str] = set()
    for label, make in makers.items():
        for i in range(instances):
            step = make().step
            step()  # the first call (JAX compiles here)
            timer = timeit.Timer(step, timer=time.process_time)
            one = min(timer.timeit(1) for _ in range(1 if label in slow else 3))
            if one > SLOW:
                slow.add(label)
                timers[(label, i)] = (timer, 1)
                break
            n = max(1, min(10_000, int(block / max(one, 1e-7))))
            timer.timeit(2 * n)
            timers[(label, i)] = (timer, n)
    keys = list(timers)
    order = random.Random(0)
    out = {label: Timing() for label in makers}
    for run_index in range(runs):
        if progress:
            print(f"{progress}: run {run_index + 1}/{runs}", file=sys.stderr, flush=True)
        samples: dict[tuple[str, int], list[tuple[float, float]]] = {key: [] for key in keys}
        deadline = time.perf_counter() + budget
        for r in range(rounds):
            order.shuffle(keys)
            for key in keys:
                if key[0] in slow and r:
                    continue
                timer, n = timers[key]
                wall = time.perf_counter()
                cpu = timer.timeit(n)
                wall = time.perf_counter() - wall
                samples[key].append((cpu / n, wall / n))
            if r >= 1 and time.perf_counter() > deadline:
                break
        for label in makers:
            copies = [s for key, s in samples.items() if key[0] == label]
            out[label].cpu.append(statistics.median(
                statistics.median(c for c, _ in s) for s in copies))
            out[label].wall.append(statistics.median(
                statistics.median(w for _, w in s) for s in copies))
    return out


def one_thread() -> Any:
    """BLAS on one thread (numpy's matrix products), like PyTorch's and XLA's settings here."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)


# ---- one workload -----------------------------------------------------------------------------


@dataclass
class Settings:
    runs: int = 5
    rounds: int = 5
    instances: int = 3
    block: float = 0.02
    budget: float = 15.0

    def as_args(self) -> list[str]:
        return ["--runs", str(self.runs), "--rounds", str(self.rounds), "--instances",
                str(self.instances), "--block", str(self.block), "--budget", str(self.budget)]


def run_workload(name: str, settings: Settings) -> dict[str, Any]:
    lr = LEARNING_RATES[name]
    here = [c.label for c in CONTENDERS if not c.own_process]
    rows, makers = prepare(name, here, lr)
    with one_thread():
        timings = measure(makers, runs=settings.runs, rounds=settings.rounds,
                          instances=settings.instances, block=settings.block,
                          budget=settings.budget, progress=name)
    exprgrad64 = [k for k in (EXPRGRAD_SCALAR, EXPRGRAD_NUMPY) if k in timings]
    if not exprgrad64:
        raise SystemExit(f"{name}: no exprgrad contender passed its check; nothing to compare")
    base64 = min(exprgrad64, key=lambda k: statistics.median(timings[k].cpu))
    base32 = EXPRGRAD_NUMPY32 if EXPRGRAD_NUMPY32 in timings else None
    for label, timing in timings.items():
        rows[label].update(_summary(timing, timings[_base(label, base64, base32)]))
        rows[label]["vs"] = _base(label, base64, base32)
    own = [c.label for c in CONTENDERS if c.own_process]
    baselines = [base64] + ([base32] if base32 else [])
    worker = own_process(name, own, baselines, settings)
    worker_base: dict[str, float] = {}
    for label in own:
        row = worker["rows"].get(label, {"failed": "the subprocess gave no result"})
        rows[label] = row
        if label in worker["timings"]:
            mine = Timing(**worker["timings"][label])
            base = _base(label, base64, base32)
            row.update(_summary(mine, Timing(**worker["timings"][base])))
            row["vs"] = f"{base}, timed in the same process"
            row["process"] = "own"
            worker_base[base] = statistics.median(worker["timings"][base]["cpu"])
    return {"examples": len(load_data(name)[0]), "lr": lr, "baseline": base64,
            "baseline_float32": base32, "contenders": rows,
            "own_process_baseline_cpu_seconds": worker_base}


def _base(label: str, base64: str, base32: str | None) -> str:
    return base32 if BY_LABEL[label].dtype == "float32" and base32 else base64


def _summary(t: Timing, base: Timing) -> dict[str, Any]:
    ratios = [a / b for a, b in zip(t.cpu, base.cpu)]
    wall_ratios = [a / b for a, b in zip(t.wall, base.wall)]
    return {"seconds": statistics.median(t.cpu), "wall_seconds": statistics.median(t.wall),
            "ratio_to_exprgrad": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "wall_ratio_to_exprgrad": statistics.median(wall_ratios),
            "runs_seconds": t.cpu, "runs_wall_seconds": t.wall}


def own_process(name: str, own: list[str], baselines: list[str], settings: Settings
                ) -> dict[str, Any]:
    """Check and time the contenders ``own`` on ``name`` in a fresh Python process, interleaved
    with exprgrad's ``baselines`` (see worker())."""
    labels = own + baselines
    env = dict(os.environ)
    # XLA on one thread, as PyTorch (set_num_threads(1)) and BLAS (threadpoolctl) are here
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                        " intra_op_parallelism_threads=1").strip()
    spec = json.dumps({"workload": name, "labels": labels, "own": own})
    proc = subprocess.run([sys.executable, __file__, "--worker", spec, *settings.as_args()],
                          capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"rows": {label: {"failed": f"subprocess exit {proc.returncode}: {tail}"}
                         for label in labels}, "timings": {}}
    return json.loads(proc.stdout)


def worker(spec: dict[str, Any], settings: Settings) -> None:
    """The subprocess side of own_process: the same checks and measurement, JSON on stdout."""
    name = spec["workload"]
    rows, makers = prepare(name, spec["labels"], LEARNING_RATES[name])
    if not any(label in makers for label in spec["own"]):
        makers = {}  # nothing of its own passed: no timing
    with one_thread():
        timings = measure(makers, runs=settings.runs, rounds=settings.rounds,
                          instances=settings.instances, block=settings.block,
                          budget=settings.budget, progress=f"{name} (own process)")
    json.dump({"rows": rows, "timings": {k: {"cpu": t.cpu, "wall": t.wall}
                                         for k, t in timings.items()}}, sys.stdout)


def run(workloads: list[str], settings: Settings) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in workloads:
        try:
            load_data(name)
        except ImportError as err:
            print(f"{name}: skipped ({err})")
            continue
        results[name] = run_workload(name, settings)
    return results


def operation_counts() -> dict[str, Any]:
    """Arithmetic statements in f_grad vs f in the scalar backend (the cheap-gradient bound)."""
    import re

    out = {}
    files = sorted((ROOT / "examples").glob("*.exg"))
    for path in files:
        code = exprgrad.compile_file(path)
        for fn in re.finditer(r"^def (\w+)_grad\(", code, re.M):
            name = fn.group(1)
            fwd = _count(code, name)
            bwd = _count(code, name + "_grad")
            out[f"{path.name}:{name}"] = {"forward": fwd, "gradient": bwd,
                                          "ratio": round(bwd / max(1, fwd), 2)}
    return out


def _count(code: str, fname: str) -> int:
    """Arithmetic operations (binary and unary operators, calls, conditionals) in a function."""
    import ast

    tree = ast.parse(code)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == fname)
    body = fn.body[1:]  # without the docstring
    return sum(1 for stmt in body for node in ast.walk(stmt)
               if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Call, ast.IfExp)))


def compile_times(quick: bool = False) -> dict[str, Any]:
    out = {}
    for n in (10_000,) if quick else (10_000, 100_000):
        src = "def f(x):\n" + "    x = sin(x) * x\n" * (n // 3) + "    return x\n"
        t = time.perf_counter()
        program = compile_program(src, "chain.exg")
        code = generate(program)
        out[f"chain {n // 3} lines"] = {"ir_nodes": len(program.graph.nodes),
                                       "lines": code.count("\n"),
                                       "seconds": round(time.perf_counter() - t, 3)}
    for label, (src, _) in (("MLP(3,[4,4,1])", SOURCES["seed"]),
                            ("MLP(2,[16,16,1])", SOURCES["moons"]),
                            ("MLP(64,[32,10])", SOURCES["digits"])):
        t = time.perf_counter()
        program = compile_program(src, "net.exg")
        scalar = generate(program)
        t_scalar = time.perf_counter() - t
        t = time.perf_counter()
        program = compile_program(src, "net.exg")
        numpy_code = generate_numpy(program)
        t_numpy = time.perf_counter() - t
        out[label] = {"ir_nodes": len(program.graph.nodes), "scalar_lines": scalar.count("\n"),
                      "scalar_compile_s": round(t_scalar, 3), "numpy_lines":
                      numpy_code.count("\n"), "numpy_compile_s": round(t_numpy, 3),
                      "grad_to_forward_ops": round(_count(scalar, "loss_grad")
                                                   / _count(scalar, "loss"), 2)}
    return out


def _time(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:,.2f} ms"


def _ratio(r: float) -> str:
    return f"{r:,.0f}x" if r >= 100 else f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


def report(results: dict[str, Any], settings: Settings) -> list[str]:
    """Print the tables; returns the contenders that failed their check."""
    failed = []
    print(f"process CPU time per training step, median of {settings.runs} runs; ratio ="
          " contender / exprgrad in the same run (> 1: exprgrad is faster), median"
          " [min-max over the runs]; wall-clock time beside")
    for name, res in results.items():
        print(f"\n{name} ({res['examples']} examples, lr {res['lr']}), ratios against"
              f" {res['baseline']}" + (f" (float32 rows: {res['baseline_float32']})"
                                      if res["baseline_float32"] else ""))
        for label, row in res["contenders"].items():
            if "seconds" in row:
                spread = ("" if row["vs"] == label else
                          f"[{_ratio(row['ratio_min'])}-{_ratio(row['ratio_max'])}]")
                extra = [row["note"]] if "note" in row else []
                if row.get("process") == "own":
                    extra.append(f"own process, vs {row['vs']}")
                elif BY_LABEL[label].dtype == "float32" and row["vs"] != label \
                        and BY_LABEL[row["vs"]].dtype != "float32":
                    extra.append(f"vs float64 {row['vs']}")
                ratio = _ratio(row["ratio_to_exprgrad"])
                print(f"  {label:<31} {_time(row['seconds']):>11} {ratio:>8} {spread:<17}"
                      f" wall {_time(row['wall_seconds']):>11}"
                      + (f"   ({'; '.join(extra)})" if extra else ""))
            elif "failed" in row:
                failed.append(f"{name}: {label}")
                print(f"  {label:<31} FAILED its check, not timed: {row['failed']}")
            else:
                print(f"  {label:<31} skipped: {row['skipped']}")
        for base, seconds in res["own_process_baseline_cpu_seconds"].items():
            print(f"  ({base} measured {_time(seconds)} in the JAX process)")
    return failed


def main() -> None:
    global STRAIGHT_W1
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--runs", type=int, default=5, help="repetitions of the whole measurement")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds in a run")
    ap.add_argument("--instances", type=int, default=3,
                    help="separately built copies of each contender")
    ap.add_argument("--block", type=float, default=0.02, help="seconds of steps in one block")
    ap.add_argument("--budget", type=float, default=15.0,
                    help="seconds after which a run stops adding rounds (two at least)")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 2 runs of 2 rounds, one copy, short blocks")
    ap.add_argument("--workloads", default="seed,moons,digits")
    ap.add_argument("--straight-w1", type=Path, default=STRAIGHT_W1,
                    help="the hand-written seed step (default: %(default)s)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    STRAIGHT_W1 = args.straight_w1
    settings = Settings(args.runs, args.rounds, args.instances, args.block, args.budget)
    if args.quick:
        settings = Settings(runs=2, rounds=2, instances=1, block=0.002, budget=1.0)
    if args.worker:
        worker(json.loads(args.worker), settings)
        return
    for name in args.workloads.split(","):
        if name not in SOURCES:
            ap.error(f"unknown workload {name!r} (one of {', '.join(SOURCES)})")
    started = time.perf_counter()
    results = run(args.workloads.split(","), settings)
    failed = report(results, settings)
    compiled = compile_times(quick=args.quick)
    print("\ncompile statistics")
    for label, row in compiled.items():
        print(f"  {label:<22} " + ", ".join(f"{k} {v}" for k, v in row.items()))
    ops = operation_counts()
    print("\narithmetic operations, gradient function / forward function (scalar backend)")
    for label, row in ops.items():
        print(f"  {label:<40} {row['gradient']:>6} / {row['forward']:<6} = {row['ratio']}")
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.json:
        settings_out = {**settings.__dict__, "quick": args.quick, "cpus": os.cpu_count()}
        Path(args.json).write_text(json.dumps({"settings": settings_out, "steps": results,
                                               "compile": compiled, "operations": ops},
                                              indent=2))
    if failed:
        print("\nFAILED their correctness check: " + ", ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
