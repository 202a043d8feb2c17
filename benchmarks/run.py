"""Time per training step (forward over the batch, loss, gradient, SGD update) for exprgrad and
the tools a user would pick instead, measured in one run from the same initial weights.

    python benchmarks/run.py [--repeat N] [--budget S] [--instances K] [--json OUT.json]
                             [--workloads seed,moons,digits]

Workloads: seed (MLP(3, [4, 4, 1]) on the notebook's 4 examples), moons (MLP(2, [16, 16, 1]) on
100 two-moons points, squared error) and digits (MLP(64, [32, 10]) on scikit-learn's 1,797
digits, tanh hidden layer, softmax cross-entropy). Contenders, each when installed: exprgrad's
scalar and numpy backends, the seed notebook's Value engine (tanh corrected), hand-written
straight-line Python (seed) and hand-written numpy (moons, digits), PyTorch eager on one thread,
JAX with jit. Every contender's first loss is checked against exprgrad's before timing; then
three separately built copies of every contender are timed interleaved (see measure_all and
measure_instances). The table shows medians and each time as a ratio to exprgrad's best backend
for that workload.
Nothing here is a test: timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
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

LR = 0.01

SOURCES = {
    "seed": ("net n = MLP(3, [4, 4, 1])\n"
             "def loss(x[3], y):\n    return (n(x) - y) ** 2\n", (3, [4, 4, 1])),
    "moons": ("net n = MLP(2, [16, 16, 1])\n"
              "def loss(x[2], y):\n    return (n(x) - y) ** 2\n", (2, [16, 16, 1])),
    "digits": ("net n = MLP(64, [32, 10], out=linear)\n"
               "def loss(x[64], y[10]):\n    z = n(x)\n    return logsumexp(z) - dot(y, z)\n",
               (64, [32, 10])),
}


def load_data(name: str) -> tuple[list[Any], list[Any]]:
    if name == "seed":
        xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
        return xs, [1.0, -1.0, -1.0, 1.0]
    if name == "moons":
        import csv

        rows = list(csv.reader(open(ROOT / "examples" / "data" / "moons.csv")))[1:]
        return [[float(r[0]), float(r[1])] for r in rows], [float(r[2]) for r in rows]
    from sklearn.datasets import load_digits  # the bundled copy: no download

    digits = load_digits()
    xs = (digits.data / 16.0).tolist()
    ys = [[1.0 if k == t else 0.0 for k in range(10)] for t in digits.target]
    return xs, ys


def layers_from_flat(params: list[float], nin: int, sizes: list[int]) -> list[tuple[Any, Any]]:
    """(W, b) per layer from the flat vector (per neuron: weights, then bias)."""
    out = []
    pos = 0
    for nout in sizes:
        w, b = [], []
        for _ in range(nout):
            w.append(params[pos:pos + nin])
            b.append(params[pos + nin])
            pos += nin + 1
        out.append((w, b))
        nin = nout
    return out


# ---- contenders -----------------------------------------------------------------------------


def exprgrad_scalar(name: str, params: list[float], xs: list[Any], ys: list[Any]
                    ) -> Callable[[], float]:
    mod = exprgrad.load_source(SOURCES[name][0], f"{name}.exg")
    loss_grad_sum = mod.loss_grad_sum  # one loop over the batch in generated code
    state = {"p": list(params)}

    def step() -> float:
        p = state["p"]
        total, g = loss_grad_sum(p, xs, ys)
        state["p"] = [q - LR * d for q, d in zip(p, g)]
        return total

    return step


def exprgrad_numpy(name: str, params: list[float], xs: list[Any], ys: list[Any]
                   ) -> Callable[[], float]:
    import numpy as np

    program = compile_program(SOURCES[name][0], f"{name}.exg")
    mod = module_from_code(generate_numpy(program), "bench_np", "<bench>")
    loss_grad = mod.loss_grad
    X, Y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    state = {"p": np.asarray(params, dtype=np.float64)}

    def step() -> float:
        values, g = loss_grad(state["p"], X, Y)
        state["p"] -= LR * g
        return float(values.sum())

    return step


def seed_engine(name: str, params: list[float], xs: list[Any], ys: list[Any]
                ) -> Callable[[], float]:
    import seed_engine as se

    nin, sizes = SOURCES[name][1]
    if name == "digits":
        raise RuntimeError("the Value engine has no log/softmax (and takes minutes per step)")
    net = se.MLP(nin, sizes)
    net.set_parameters(params)
    ps = net.parameters()

    def step() -> float:
        loss = sum(((net(x) - y) ** 2 for x, y in zip(xs, ys)), se.Value(0.0))
        for p in ps:
            p.grad = 0.0
        loss.backward()
        for p in ps:
            p.data -= LR * p.grad
        return loss.data

    return step


def handwritten_python(name: str, params: list[float], xs: list[Any], ys: list[Any]
                       ) -> Callable[[], float]:
    """MLP(3, [4, 4, 1]) forward and backward written out by hand, one example at a time."""
    if name != "seed":
        raise RuntimeError("written for the seed network only")
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
        state["p"] = [q - LR * d for q, d in zip(p, g)]
        return total

    return step


def handwritten_numpy(name: str, params: list[float], xs: list[Any], ys: list[Any]
                      ) -> Callable[[], float]:
    import numpy as np

    nin, sizes = SOURCES[name][1]
    layers = [(np.asarray(w), np.asarray(b)) for w, b in layers_from_flat(params, nin, sizes)]
    X, Y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
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
            w -= LR * gw
            b -= LR * gb
        return loss

    return step


def pytorch_eager(name: str, params: list[float], xs: list[Any], ys: list[Any]
                  ) -> Callable[[], float]:
    import torch

    torch.set_num_threads(1)
    nin, sizes = SOURCES[name][1]
    tensors = []
    for w, b in layers_from_flat(params, nin, sizes):
        tensors.append(torch.tensor(w, dtype=torch.float64, requires_grad=True))
        tensors.append(torch.tensor(b, dtype=torch.float64, requires_grad=True))
    X = torch.tensor(xs, dtype=torch.float64)
    Y = torch.tensor(ys, dtype=torch.float64)
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
                t -= LR * t.grad
        return float(loss.detach())

    return step


def jax_jit(name: str, params: list[float], xs: list[Any], ys: list[Any]
            ) -> Callable[[], float]:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    nin, sizes = SOURCES[name][1]
    layers = [(jnp.asarray(w), jnp.asarray(b)) for w, b in layers_from_flat(params, nin, sizes)]
    X, Y = jnp.asarray(xs), jnp.asarray(ys)
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
        return loss, [(w - LR * gw, b - LR * gb) for (w, b), (gw, gb) in zip(ls, grads)]

    state = {"l": layers}

    def step() -> float:
        loss, state["l"] = update(state["l"])
        return float(loss)

    return step


CONTENDERS: dict[str, Callable[..., Callable[[], float]]] = {
    "exprgrad (scalar)": exprgrad_scalar,
    "exprgrad (numpy)": exprgrad_numpy,
    "hand-written Python": handwritten_python,
    "hand-written numpy": handwritten_numpy,
    "seed Value engine": seed_engine,
    "PyTorch eager (1 thread)": pytorch_eager,
    "JAX jit": jax_jit,
}


def measure_all(steps: dict[str, Callable[[], float]], repeat: int, budget: float
                ) -> dict[str, float]:
    """Median seconds per step for each contender, measured interleaved.

    Each contender gets a block size worth about 20 ms of steps and two warm-up blocks; then
    rounds time one block of every contender in turn (in a new random order each round), so a
    slow drift of the machine's speed, or what one contender leaves behind (threads still
    spinning, a cold cache), affects all of them alike. Rounds stop after ``repeat``,
    or after ``budget`` seconds once there are three. A contender slower than 0.2 s per step
    is timed in the first three rounds only.
    """
    inner: dict[str, int] = {}
    slow: set[str] = set()
    for label, step in steps.items():
        start = time.perf_counter()
        step()
        one = time.perf_counter() - start
        inner[label] = max(1, min(1000, int(0.02 / max(one, 1e-7))))
        if one > 0.2:
            slow.add(label)
        for _ in range(0 if one > 0.2 else 2 * inner[label]):
            step()
    samples: dict[str, list[float]] = {label: [] for label in steps}
    labels = list(steps)
    order = random.Random(0)
    deadline = time.perf_counter() + budget
    for r in range(repeat):
        order.shuffle(labels)  # no contender always runs right after the same other one
        for label in labels:
            if label in slow and r >= 3:
                continue
            step, n = steps[label], inner[label]
            t = time.perf_counter()
            for _ in range(n):
                step()
            samples[label].append((time.perf_counter() - t) / n)
        if time.perf_counter() > deadline and r >= 2:
            break
    return {label: statistics.median(v) for label, v in samples.items()}


def measure_instances(makers: dict[str, Callable[[], Callable[[], float]]], instances: int,
                      repeat: int, budget: float) -> dict[str, float]:
    """Like measure_all, over ``instances`` separately built copies of each contender (their
    arrays land at different addresses, which moves small-array numpy code by 10-15 %); a
    contender's figure is the median of its copies' medians."""
    steps = {f"{label}#{i}": make() for label, make in makers.items() for i in range(instances)}
    seconds = measure_all(steps, repeat, budget)
    return {label: statistics.median(seconds[f"{label}#{i}"] for i in range(instances))
            for label in makers}


def run(workloads: list[str], repeat: int, budget: float, instances: int = 3
        ) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in workloads:
        try:
            xs, ys = load_data(name)
        except ImportError as err:
            print(f"{name}: skipped ({err})")
            continue
        mod = exprgrad.load_source(SOURCES[name][0], f"{name}.exg")
        params = mod.init_params(0)
        reference = None
        rows: dict[str, dict[str, Any]] = {}
        fresh: dict[str, Callable[[], Callable[[], float]]] = {}
        for label, make in CONTENDERS.items():
            try:
                step = make(name, params, xs, ys)
            except (ImportError, RuntimeError) as err:
                rows[label] = {"skipped": str(err).splitlines()[0]}
                continue
            first = step()
            if reference is None:
                reference = first
            if not math.isclose(first, reference, rel_tol=1e-9):
                rows[label] = {"skipped": f"first loss {first} != {reference}"}
                continue
            fresh[label] = functools.partial(make, name, params, xs, ys)
            rows[label] = {"first_loss": first}
        for label, seconds in measure_instances(fresh, instances, repeat, budget).items():
            rows[label]["seconds"] = seconds
        timed = {k: v["seconds"] for k, v in rows.items() if "seconds" in v}
        base = min(timed.get("exprgrad (scalar)", math.inf), timed.get("exprgrad (numpy)",
                                                                            math.inf))
        for row in rows.values():
            if "seconds" in row:
                row["ratio_to_exprgrad"] = row["seconds"] / base
        results[name] = {"examples": len(xs), "contenders": rows}
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




def compile_times() -> dict[str, Any]:
    out = {}
    for n in (10_000, 100_000):
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--instances", type=int, default=3,
                    help="separately built copies of each contender")
    ap.add_argument("--budget", type=float, default=30.0,
                    help="seconds of timing rounds per workload")
    ap.add_argument("--workloads", default="seed,moons,digits")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    results = run(args.workloads.split(","), args.repeat, args.budget, args.instances)
    for name, res in results.items():
        print(f"\n{name} ({res['examples']} examples): median time per training step")
        for label, row in res["contenders"].items():
            if "seconds" in row:
                print(f"  {label:<26} {row['seconds'] * 1e6:>12.1f} us   "
                      f"{row['ratio_to_exprgrad']:>8.2f}x exprgrad")
            else:
                print(f"  {label:<26} skipped: {row['skipped']}")
    compiled = compile_times()
    print("\ncompile statistics")
    for label, row in compiled.items():
        print(f"  {label:<22} " + ", ".join(f"{k} {v}" for k, v in row.items()))
    ops = operation_counts()
    print("\narithmetic operations, gradient function / forward function (scalar backend)")
    for label, row in ops.items():
        print(f"  {label:<40} {row['gradient']:>6} / {row['forward']:<6} = {row['ratio']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"steps": results, "compile": compiled,
                                               "operations": ops}, indent=2))


if __name__ == "__main__":
    main()
