"""The op table: every field present, every derivative rule equal to sympy.diff of the op's
sympy counterpart (symbolically and on a grid with negatives, 0 and domain edges), the kink
conventions at the kink, and a deliberately broken rule caught by the same check."""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import replace

import pytest
import sympy as sp

from exprgrad.gradcheck.checker import to_sympy
from exprgrad.ir.graph import Graph, check_program
from exprgrad.ir.ops import OPS

LEAVES = {"const", "input", "param", "hole", "custom"}
ELEMENTWISE = sorted(name for name, spec in OPS.items() if spec.elementwise)
#: how a program writes the elementwise ops that are operators, not builtins
OPERATORS = {"add": "a + b", "sub": "a - b", "mul": "a * b", "div": "a / b", "pow": "a ** b",
             "neg": "-a", "lt": "a < b", "le": "a <= b", "gt": "a > b", "ge": "a >= b",
             "eq": "a == b", "ne": "a != b"}
#: the elementwise ops a program can name (the internal ones, like pick_max, are reached through
#: the rules that use them)
WRITABLE = [n for n in ELEMENTWISE if OPS[n].builtin or n in OPERATORS]
TENSOR = sorted(name for name, spec in OPS.items() if not spec.elementwise and name not in LEAVES)

GRID = [-3.0, -1.5, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 2.0, 3.5]
# where each op is defined (the grid points outside are skipped for that op), from the table
DOMAIN = {name: spec.domain for name, spec in OPS.items() if spec.domain is not None}
# points where an op has a kink: compared with the documented convention instead of sympy
KINKS = {name: spec.kink for name, spec in OPS.items() if spec.kink is not None}


def test_every_op_declares_every_field() -> None:
    for name, spec in OPS.items():
        assert spec.label, name
        if name in LEAVES:
            continue
        assert spec.vjp is not None, f"{name}: no derivative rule"
        assert spec.unroll is not None, f"{name}: no scalar emitter/unroll"
        if spec.elementwise:
            for field in ("ref", "py", "np", "sym"):
                assert getattr(spec, field) is not None, f"{name}: no {field}"


def _rule_vs_sympy(name: str, spec_override=None):  # type: ignore[no-untyped-def]
    """Build op(a[, b]) in IR, differentiate with the table's rule, convert both to sympy."""
    spec = spec_override or OPS[name]
    g = Graph()
    inputs = [g.make("input", (), ("t", n, k), ()) for k, n in enumerate("abc")]
    args = inputs[: spec.arity]
    out = g.make(name, tuple(args), None, ())
    cot = g.make("input", (), ("t", "g", 3), ())
    contribs = spec.vjp(g, cot, out, args, None)
    check_program([out, *[c for c in contribs if c is not None]])
    *syms, sg = sp.symbols("a b c g", real=True)
    leaves = {x.id: [s] for x, s in zip(inputs, syms)} | {cot.id: [sg]}
    forward = spec.sym(*syms[: spec.arity])
    ours = [None if c is None else to_sympy([c], leaves)[0][0] for c in contribs]
    return syms[: spec.arity], sg, forward, ours


def _points(arity: int) -> list[tuple[float, ...]]:
    """Points for an op of ``arity`` arguments (a coarser grid for three)."""
    return list(itertools.product(GRID if arity < 3 else GRID[::2], repeat=arity))


def _mismatches(name: str, spec_override=None) -> list[str]:  # type: ignore[no-untyped-def]
    syms, sg, forward, ours = _rule_vs_sympy(name, spec_override)
    problems = []
    for s, mine in zip(syms, ours):
        reference = sg * sp.diff(forward, s)
        if mine is None:  # "no gradient flows": sympy must agree that it is zero almost everywhere
            mine = sp.Integer(0)
        for point in _points(len(syms)):
            if name in DOMAIN and not DOMAIN[name](*point):
                continue
            if name in KINKS and point[0] == KINKS[name]:
                continue
            subs = {**{sym: sp.Float(v, 30) for sym, v in zip(syms, point)}, sg: sp.Float(1.7)}
            want = complex(sp.N(reference.subs(subs), 30))
            got = complex(sp.N(mine.subs(subs), 30))
            if abs(want - got) > 1e-12 * max(1.0, abs(want)):
                problems.append(f"d{name}/d{s} at {point}: rule {got}, sympy {want}")
    return problems


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_rule_matches_sympy_on_grid(name: str) -> None:
    assert _mismatches(name) == []


# piecewise ops: sympy's Heaviside/sign forms are compared on the grid (and at the kink) instead
SMOOTH = [n for n in ELEMENTWISE if n not in KINKS and not OPS[n].sym(
    *sp.symbols("a b c", real=True)[: OPS[n].arity]).has(sp.Max, sp.Min, sp.Heaviside, sp.sign,
                                                          sp.Piecewise)]


@pytest.mark.parametrize("name", SMOOTH)
def test_rule_matches_sympy_symbolically(name: str) -> None:
    syms, sg, forward, ours = _rule_vs_sympy(name)
    for s, mine in zip(syms, ours):
        reference = sg * sp.diff(forward, s)
        if mine is None:
            assert sp.simplify(reference) == 0
        else:
            assert _equal_up_to_float_constants(mine, reference), (name, s, mine, reference)


def _equal_up_to_float_constants(mine, reference) -> bool:  # type: ignore[no-untyped-def]
    """Symbolically equal, where a rule's float constant (``1/log(10)`` rounded to a double)
    may differ from sympy's exact one by a relative rounding error."""
    difference = sp.simplify(mine - reference)
    if difference == 0:
        return True
    ratio = sp.simplify(difference / reference)
    return bool(ratio.is_number) and abs(complex(ratio)) < 1e-15


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_reference_implementation_matches_sympy(name: str) -> None:
    spec = OPS[name]
    for point in _points(spec.arity or 1):
        if name in DOMAIN and not DOMAIN[name](*point):
            continue
        want = complex(sp.N(spec.sym(*[sp.Float(v, 30) for v in point]), 30))
        got = spec.ref(*point)
        assert abs(want - got) <= 1e-12 * max(1.0, abs(want)), (name, point, got, want)


def test_kink_conventions_at_the_kink() -> None:
    from exprgrad import load_source

    mod = load_source("def r(x):\n    return relu(x)\ndef a(x):\n    return abs(x)\n"
                      "def m(x, y):\n    return max(x, y)\ndef n(x, y):\n    return min(x, y)\n"
                      "def s(x):\n    return sqrt(x)\n")
    assert mod.r_grad(0.0) == (0.0, (0.0,))
    assert mod.a_grad(0.0) == (0.0, (0.0,))
    assert mod.m_grad(1.0, 1.0) == (1.0, (1.0, 0.0))  # a tie sends the gradient to the first
    assert mod.n_grad(1.0, 1.0) == (1.0, (1.0, 0.0))
    value, (ds,) = mod.s_grad(0.0)
    assert value == 0.0 and ds == math.inf


def test_domain_policy_in_generated_code() -> None:
    from exprgrad import load_source

    mod = load_source("def l(x):\n    return log(x)\ndef q(x):\n    return sqrt(x)\n"
                      "def p(x, y):\n    return x ** y\ndef d(x, y):\n    return x / y\n"
                      "def e(x):\n    return exp(x)\ndef s(x):\n    return sigmoid(x)\n"
                      "def sp(x):\n    return softplus(x)\n")
    assert mod.l(0.0) == -math.inf and math.isnan(mod.l(-1.0))
    assert math.isnan(mod.q(-1.0))
    assert math.isnan(mod.p(-8.0, 1.0 / 3.0)) and mod.p(-2.0, 3.0) == -8.0
    assert mod.d(1.0, 0.0) == math.inf and mod.d(-1.0, 0.0) == -math.inf
    assert math.isnan(mod.d(0.0, 0.0))
    assert mod.e(1000.0) == math.inf
    assert mod.s(-1000.0) == 0.0 and mod.s(1000.0) == 1.0
    assert mod.sp(1000.0) == 1000.0 and mod.sp(-1000.0) == 0.0


def test_a_broken_rule_is_caught() -> None:
    """The seed's tanh bug, planted in a copy of the table entry, fails the same comparison."""
    from exprgrad.ir.ops import _c

    def seed_tanh_rule(b, g, out, a, attr):  # type: ignore[no-untyped-def]
        # self.grad += 1 - (t**2) * out.grad
        return (b.apply("sub", _c(b, 1.0), b.apply("mul", b.apply("mul", out, out), g)),)

    broken = replace(OPS["tanh"], vjp=seed_tanh_rule)
    assert _mismatches("tanh", broken), "the wrong tanh rule was not detected"


@pytest.mark.parametrize("name", TENSOR)
def test_tensor_rule_matches_finite_differences(name: str) -> None:
    """Tensor ops: the rule's vector-Jacobian product against central differences of unroll."""
    import random

    from exprgrad.ir.diff import grad
    from exprgrad.ir.ops import EvalAlgebra

    shapes = {"sum": [(3,)], "logsumexp": [(4,)], "dot": [(3,), (3,)], "matmul": [(2, 3), (3,)],
              "transpose": [(2, 3)], "outer": [(2,), (3,)], "stack": [(), (), ()],
              "index": [(3,)], "scatter": [()], "broadcast": [()]}[name]
    attr = {"index": 1, "scatter": (1, (3,)), "broadcast": (4,)}.get(name)
    g = Graph()
    ins = [g.make("input", (), ("t", f"a{i}", i), s) for i, s in enumerate(shapes)]
    out = g.apply(name, *ins, attr=attr)
    rng = random.Random(name)
    cot = g.make("input", (), ("t", "g", 9), out.shape)
    contribs = grad(g, out, ins, seed=cot)
    alg = EvalAlgebra()
    values = {n.id: [rng.uniform(-1, 1) for _ in range(n.size)] for n in ins}
    cot_values = [rng.uniform(-1, 1) for _ in range(out.size)]

    def evaluate(node, vals):  # type: ignore[no-untyped-def]
        from exprgrad.ir.interpret import interpret

        return interpret([node], {**vals, cot.id: cot_values}, alg)[0]

    def objective(vals):  # type: ignore[no-untyped-def]
        return math.fsum(c * o for c, o in zip(cot_values, evaluate(out, vals)))

    for inp, contrib in zip(ins, contribs):
        analytic = evaluate(contrib, values)
        for i in range(inp.size):
            plus = {k: list(v) for k, v in values.items()}
            minus = {k: list(v) for k, v in values.items()}
            plus[inp.id][i] += 1e-6
            minus[inp.id][i] -= 1e-6
            fd = (objective(plus) - objective(minus)) / 2e-6
            assert abs(fd - analytic[i]) < 1e-6, (name, i, fd, analytic[i])


def _grid(name: str) -> list[tuple[float, ...]]:
    """Grid points inside the op's domain and away from its kink."""
    spec = OPS[name]
    return [p for p in _points(spec.arity or 1)
            if (spec.domain is None or spec.domain(*p)) and p[0] != spec.kink]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_check_evaluates_every_op_and_its_derivatives(name: str) -> None:
    """`exprgrad check` evaluates sympy expressions with mpmath: the op's sympy form and its
    derivatives must evaluate (no op missing from the numeric map), to the op's reference value."""
    import mpmath

    from exprgrad.gradcheck.checker import mp_evaluate

    spec = OPS[name]
    syms = sp.symbols("a b c", real=True)[: spec.arity]
    forward = spec.sym(*syms)
    partials = [sp.diff(forward, s) for s in syms]
    for point in _grid(name):
        values = {s: mpmath.mpf(v) for s, v in zip(syms, point)}
        with mpmath.workdps(30):
            got = complex(mp_evaluate(forward, values))
            for d in partials:
                complex(mp_evaluate(d, values))  # raises for a function it cannot evaluate
        want = spec.ref(*point)
        assert abs(got - want) <= 1e-12 * max(1.0, abs(want)), (name, point, got, want)


@pytest.mark.parametrize("name", WRITABLE)
def test_both_backends_compute_every_op(name: str) -> None:
    """Each op compiled by both backends: values equal the reference implementation, gradients
    equal sympy's derivative, at every grid point (the modules pass the allowlist too)."""
    import numpy as np

    from exprgrad.emit.arrays import generate_numpy
    from exprgrad.emit.load import entry_point, module_from_code
    from exprgrad.emit.scalar import generate
    from exprgrad.lower.lowering import compile_program

    spec = OPS[name]
    args = ["a", "b", "c"][: spec.arity]
    call = OPERATORS.get(name, f"{spec.builtin}({', '.join(args)})")
    program = compile_program(f"def f({', '.join(args)}):\n    return {call}\n", "op.exg")
    scalar = entry_point(module_from_code(generate(program), "op_py", "<op>"), "f")
    batched = entry_point(module_from_code(generate_numpy(program), "op_np", "<op>"), "f")
    syms = sp.symbols("a b c", real=True)[: spec.arity]
    forward = spec.sym(*syms)
    partials = [sp.diff(forward, s) for s in syms]
    points = _grid(name)
    np_value, np_grads = batched(*[np.array([p[i] for p in points]) for i in range(len(args))])
    for k, point in enumerate(points):
        value, grads = scalar(*point)
        want = spec.ref(*point)
        assert value == want or abs(value - want) <= 1e-15 * abs(want), (name, point, value)
        assert abs(np_value[k] - want) <= 1e-12 * max(1.0, abs(want)), (name, point, np_value)
        subs = {s: sp.Float(v, 30) for s, v in zip(syms, point)}
        for i, d in enumerate(partials):
            exact = complex(sp.N(d.subs(subs), 30)).real
            for got in (grads[i], np_grads[i][k]):
                assert abs(got - exact) <= 1e-12 * max(1.0, abs(exact)), (name, point, i, got)


def test_docs_list_every_builtin() -> None:
    """docs/language.md names every builtin of the op table, and nothing else."""
    from pathlib import Path

    from exprgrad.ir.ops import BUILTINS

    text = (Path(__file__).parent.parent / "docs" / "language.md").read_text(encoding="utf-8")
    start = text.index("- Builtins:")
    listed = set(re.findall(r"`([a-z0-9_ ]+)`", text[start:text.index("\n- ", start + 1)]))
    words = {w for item in listed for w in item.split()}
    assert words == set(BUILTINS), sorted(words ^ set(BUILTINS))


def test_numerically_delicate_forms_agree_between_backends() -> None:
    """sigmoid far out on the left (the numpy form used to underflow to 0 and log(sigmoid) to
    -inf), expm1's gradient for x << 0 (out + 1 cancelled to 0), sign of nan (scalar gave 0)."""
    import numpy as np

    from exprgrad.api import entry_point, module_from_code
    from exprgrad.emit.arrays import generate_numpy
    from exprgrad.emit.scalar import generate
    from exprgrad.lower.lowering import compile_program

    program = compile_program("def s(x):\n    return log(sigmoid(x))\n"
                              "def e(x):\n    return expm1(x)\ndef g(x):\n    return sign(x)\n",
                              "d.exg")
    scalar = module_from_code(generate(program), "d_py", "<d>")
    batched = module_from_code(generate_numpy(program), "d_np", "<d>")
    xs = [-745.0, -300.0, -40.0, -1.0, 0.0, 3.0, 40.0]
    for fname in ("s", "e"):
        with np.errstate(over="ignore", divide="ignore"):  # 1/sigmoid(-745): numpy says so
            np_value, (np_grad,) = entry_point(batched, fname)(np.array(xs))
        for k, x in enumerate(xs):
            value, (grad,) = entry_point(scalar, fname)(x)
            assert np_value[k] == pytest.approx(value, rel=1e-12, abs=1e-300), (fname, x)
            assert np_grad[k] == pytest.approx(grad, rel=1e-12, abs=1e-300), (fname, x)
    assert entry_point(scalar, "s")(-40.0)[0] == pytest.approx(-40.0, rel=1e-15)
    assert entry_point(scalar, "e")(-40.0)[1][0] == pytest.approx(math.exp(-40.0), rel=1e-15)
    assert math.isnan(entry_point(scalar, "g", "value")(math.nan))
    assert math.isnan(entry_point(batched, "g", "value")(np.array([math.nan]))[0])


def test_max_and_min_propagate_nan_with_a_consistent_gradient() -> None:
    """The value and the gradient come from the same argument, nan included (max(log(x), y)
    at x = -1 used to be 2 with the gradient of log(x))."""
    import numpy as np

    from exprgrad.api import entry_point, module_from_code
    from exprgrad.emit.arrays import generate_numpy
    from exprgrad.emit.scalar import generate
    from exprgrad.lower.lowering import compile_program

    program = compile_program("def f(x, y):\n    return max(log(x), y)\n"
                              "def g(x, y):\n    return min(y, log(x))\n", "m.exg")
    scalar = module_from_code(generate(program), "m_py", "<m>")
    batched = module_from_code(generate_numpy(program), "m_np", "<m>")
    nan = math.nan
    # (x, y): value, d/dx, d/dy of f; g is min(y, log x): with x = -1 log is nan, returned
    for fname, x, y, want in (("f", -1.0, 2.0, (nan, -1.0, 0.0)), ("f", 1.0, 2.0, (2.0, 0.0, 1.0)),
                              ("f", 3.0, 0.0, (math.log(3.0), 1 / 3, 0.0)),
                              ("g", -1.0, 2.0, (nan, -1.0, 0.0)), ("g", 1.0, 2.0, (0.0, 1.0, 0.0)),
                              ("f", 2.0, nan, (nan, 0.0, 1.0))):
        value, grads = entry_point(scalar, fname)(x, y)
        with np.errstate(invalid="ignore"):
            np_value, np_grads = entry_point(batched, fname)(np.array([x]), np.array([y]))
        for got in ((value, *grads), (np_value[0], np_grads[0][0], np_grads[1][0])):
            for a, b in zip(got, want):
                assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b), \
                    (fname, x, y, got, want)
