"""Each optimization switched off in turn, measured on the training steps of benchmarks/run.py.

    python benchmarks/ablation.py [--repeat N] [--budget SECONDS] [--workloads seed,moons,digits]

seed runs on the scalar backend (its fused ``loss_step`` when the generated module has one, else
``loss_grad_sum`` and an update), moons and digits on the numpy backend, with benchmarks/run.py's
step sizes. For every variant it reports the median time per training step (process CPU time,
BLAS on one thread), measured interleaved with the other variants of the same workload over
three separately built copies of each (benchmarks/run.py's measure), its ratio to "all on", and
the size of the generated gradient code (scalar lines, or numpy statements). The variants:

- fusion off: no inlining of single-use temporaries (scalar backend; codegen.FUSE_LIMIT = 1);
- simplification off: no constant folding or exact identities (x*1, x+0, --x, x + -y) at build;
- powers as pow calls: ``x ** 2`` printed as a call of the power function instead of ``x * x``;
- CSE off: operation nodes are no longer hash-consed, so repeated subexpressions (within the
  forward pass, and between it and the gradient) are computed again;
- forward values recomputed: CSE off and the rules of tanh, exp, sigmoid and sqrt rebuilt from
  their input (tanh' = 1 - tanh(x)**2), so the gradient recomputes what the forward pass had
  (compare with "CSE off");
- gradients nobody asked for: the numpy gradient also computes d loss/d inputs (pruning keeps
  them out normally);
- buffer reuse off: every numpy result is a freshly allocated array;
- softmax sharing off: logsumexp's gradient takes a second pass of exponentials.

Timings are reported, never asserted; the machine's noise shows in how far "all on" moves
between runs.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402

from exprgrad.emit import arrays as npgen  # noqa: E402
from exprgrad.emit import scalar as codegen  # noqa: E402
from exprgrad.ir import ops  # noqa: E402
from exprgrad.ir.diff import grad  # noqa: E402
from exprgrad.lower import lowering as lower  # noqa: E402


@contextlib.contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    saved = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, saved)


@contextlib.contextmanager
def graph_flag(flag: str) -> Iterator[None]:
    """Every graph the frontend builds gets ``flag`` set to False."""
    original = lower.Lowerer.__init__

    def init(self: Any, text: str, filename: str) -> None:
        original(self, text, filename)
        setattr(self.graph, flag, False)

    with patched(lower.Lowerer, "__init__", init):
        yield


@contextlib.contextmanager
def patched_ops(fields: dict[str, dict[str, Any]]) -> Iterator[None]:
    """Op-table entries with some fields replaced (op name -> field -> value)."""
    saved = {name: ops.OPS[name] for name in fields}
    ops.OPS.update({name: replace(saved[name], **f) for name, f in fields.items()})
    try:
        yield
    finally:
        ops.OPS.update(saved)


def _one(b: Any) -> Any:
    return b.const(1.0)


RECOMPUTING_RULES = {
    "tanh": lambda b, g, out, a, attr: (b.apply("mul", g, b.apply(
        "sub", _one(b), b.apply("mul", b.apply("tanh", a[0]), b.apply("tanh", a[0])))),),
    "exp": lambda b, g, out, a, attr: (b.apply("mul", g, b.apply("exp", a[0])),),
    "sigmoid": lambda b, g, out, a, attr: (b.apply("mul", g, b.apply(
        "mul", b.apply("sigmoid", a[0]), b.apply("sub", _one(b), b.apply("sigmoid", a[0])))),),
    "sqrt": lambda b, g, out, a, attr: (b.apply("div", b.apply("mul", g, b.const(0.5)),
                                                b.apply("sqrt", a[0])),),
}


@contextlib.contextmanager
def recomputed_forward_values() -> Iterator[None]:
    with patched_ops({k: {"vjp": rule} for k, rule in RECOMPUTING_RULES.items()}), \
            graph_flag("share"):
        yield


def powers_as_calls() -> Any:
    return patched_ops({"pow": {
        "py": lambda a, k, u: f"{u['_pow']}({a[0]}, {a[1]})",
        "np": lambda a, attr, c: f"np.power({a[0]}, {a[1]})",
        "np_into": lambda a, attr, c, out: f"np.power({a[0]}, {a[1]}, {out})"}})


@contextlib.contextmanager
def unasked_gradients() -> Iterator[None]:
    original = npgen._Writer.function

    def function(self: Any, kind: str, fn: Any, roots: list[Any], doc: str,
                 param_grads: Any, *rest: Any) -> None:
        if kind == "grad" and param_grads is not None:
            roots = roots + grad(self.graph, fn.outputs[0], fn.inputs)
        original(self, kind, fn, roots, doc, param_grads, *rest)

    with patched(npgen._Writer, "function", function):
        yield


SCALAR_VARIANTS: dict[str, Callable[[], Any]] = {
    "all on": contextlib.nullcontext,
    "fusion off": lambda: patched(codegen, "FUSE_LIMIT", 1),
    "simplification off": lambda: graph_flag("simplify"),
    "powers as pow calls": powers_as_calls,
    "CSE off": lambda: graph_flag("share"),
    "forward values recomputed": recomputed_forward_values,
}
NUMPY_VARIANTS: dict[str, Callable[[], Any]] = {
    "all on": contextlib.nullcontext,
    "simplification off": lambda: graph_flag("simplify"),
    "powers as pow calls": powers_as_calls,
    "CSE off": lambda: graph_flag("share"),
    "forward values recomputed": recomputed_forward_values,
    "gradients nobody asked for": unasked_gradients,
    "buffer reuse off": lambda: patched(npgen, "REUSE_BUFFERS", False),
    "softmax sharing off": lambda: patched(npgen, "SHARE_SOFTMAX", False),
}


def code_size(workload: str, numpy: bool) -> str:
    program = lower.compile_program(run.SOURCES[workload][0], f"{workload}.exg")
    if not numpy:
        code = codegen.generate(program)
        return f"{code.count(chr(10))} scalar lines"
    tree = ast.parse(npgen.generate_numpy(program))
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "loss_grad")
    return f"{len(fn.body) - 1} numpy statements"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15, help="interleaved rounds")
    ap.add_argument("--budget", type=float, default=20.0, help="seconds of rounds per workload")
    ap.add_argument("--workloads", default="seed,moons,digits")
    ap.add_argument("--instances", type=int, default=3,
                    help="separately built copies of each variant")
    args = ap.parse_args()
    for workload in args.workloads.split(","):
        numpy = workload != "seed"
        contender = run.exprgrad_numpy if numpy else run.exprgrad_scalar
        variants = NUMPY_VARIANTS if numpy else SCALAR_VARIANTS
        xs, ys = run.load_data(workload)
        lr = run.LEARNING_RATES[workload]
        params = run.exprgrad.load_source(run.SOURCES[workload][0]).init_params(0)
        makers, sizes, first = {}, {}, {}
        for label, make in variants.items():
            with make():
                built = [contender(workload, params, xs, ys, lr)
                         for _ in range(args.instances)]
                makers[label] = iter(built).__next__
                sizes[label] = code_size(workload, numpy)
                first[label] = contender(workload, params, xs, ys, lr).step()
        with run.one_thread():
            timings = run.measure(makers, runs=1, rounds=args.repeat, instances=args.instances,
                                  block=0.02, budget=args.budget)
        seconds = {label: t.cpu[0] for label, t in timings.items()}
        print(f"\n{workload} ({contender.__name__}): median process CPU time per training step")
        base = seconds["all on"]
        for label in variants:
            same = abs(first[label] - first["all on"]) <= 1e-9 * abs(first["all on"])
            print(f"  {label:<28} {seconds[label] * 1e6:9.1f} us  {seconds[label] / base:5.2f}x"
                  f"   {sizes[label]}{'' if same else '   FIRST LOSS DIFFERS'}")


if __name__ == "__main__":
    main()
