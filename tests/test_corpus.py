"""A corpus of scalar functions: generated value and gradient against an independent reference.

Each entry gives the exprgrad source and the same function written by hand in sympy. The
reference derivative is ``sympy.diff`` of the hand-written expression, evaluated with 30 digits;
the generated gradient is also compared with central differences of the generated forward code.
Nothing here uses exprgrad's own IR-to-sympy bridge.
"""

from __future__ import annotations

import math
import random

import pytest
import sympy as sp

import exprgrad

x, y, z = sp.symbols("x y z", real=True)

ANY = (-2.0, 2.0)
POS = (0.2, 3.0)

# name, exprgrad body (def NAME(args): ...), sympy expression, argument domains
CORPUS: list[tuple[str, str, object, list[tuple[float, float]]]] = [
    ("poly", "def f(x, y):\n    return 3 * x ** 2 + x * y - y ** 3 + 7\n",
     3 * x**2 + x * y - y**3 + 7, [ANY, ANY]),
    ("rebind", "def f(x, y):\n    z = x * y\n    z = z + x\n    z = z * z\n    return z\n",
     (x * y + x) ** 2, [ANY, ANY]),
    ("augassign", "def f(x, y):\n    z = x\n    z += y\n    z *= x\n    z -= 2\n    z /= y\n"
     "    return z\n", ((x + y) * x - 2) / y, [ANY, POS]),
    ("shared", "def f(x):\n    s = sin(x) * cos(x)\n    return s + s * s + exp(s)\n",
     sp.sin(x) * sp.cos(x) + (sp.sin(x) * sp.cos(x)) ** 2 + sp.exp(sp.sin(x) * sp.cos(x)),
     [ANY]),
    ("unused_arg", "def f(x, y, z):\n    return x * x + z\n", x**2 + z, [ANY, ANY, ANY]),
    ("constant", "def f(x):\n    return 42.5\n", sp.Float(42.5), [ANY]),
    ("constant_expr", "def f(x, y):\n    return 2 ** 10 - 3 * 4\n", sp.Integer(1012),
     [ANY, ANY]),
    ("var_exponent", "def f(x, y):\n    return x ** y\n", x**y, [POS, ANY]),
    ("var_exponent2", "def f(x):\n    return x ** x\n", x**x, [POS]),
    ("exp_base", "def f(x):\n    return 2 ** x\n", 2**x, [ANY]),
    ("neg_base_int", "def f(x):\n    return x ** 3 - x ** 2 + x ** -1\n", x**3 - x**2 + 1 / x,
     [(-3.0, -0.3)]),
    ("neg_base_int_exponent5", "def f(x):\n    return (x - 1) ** 5\n", (x - 1) ** 5, [ANY]),
    ("unary", "def f(x):\n    return -x ** 2 + +x - -x\n", -(x**2) + 2 * x, [ANY]),
    ("right_assoc_pow", "def f(x):\n    return 2 ** x ** 2\n", 2 ** (x**2), [ANY]),
    ("left_assoc_div", "def f(x, y, z):\n    return x / y / z\n", (x / y) / z,
     [ANY, POS, POS]),
    ("exp", "def f(x):\n    return exp(2 * x) - exp(-x)\n", sp.exp(2 * x) - sp.exp(-x), [ANY]),
    ("log", "def f(x, y):\n    return log(x * y) + log(x)\n", sp.log(x * y) + sp.log(x),
     [POS, POS]),
    ("tanh", "def f(x):\n    return tanh(3 * x - 1)\n", sp.tanh(3 * x - 1), [ANY]),
    ("sigmoid", "def f(x):\n    return sigmoid(x) * sigmoid(-2 * x)\n",
     1 / (1 + sp.exp(-x)) / (1 + sp.exp(2 * x)), [ANY]),
    ("relu", "def f(x, y):\n    return relu(x - y) * x\n", sp.Max(0, x - y) * x, [ANY, ANY]),
    ("sin_cos", "def f(x, y):\n    return sin(x * y) + cos(x - y)\n",
     sp.sin(x * y) + sp.cos(x - y), [ANY, ANY]),
    ("sqrt", "def f(x, y):\n    return sqrt(x * x + y * y)\n", sp.sqrt(x**2 + y**2),
     [ANY, ANY]),
    ("abs", "def f(x):\n    return abs(x) * x + abs(x - 1)\n", sp.Abs(x) * x + sp.Abs(x - 1),
     [ANY]),
    ("softplus", "def f(x):\n    return softplus(x) - softplus(-x)\n",
     sp.log(1 + sp.exp(x)) - sp.log(1 + sp.exp(-x)), [ANY]),
    ("log1p", "def f(x):\n    return log1p(x * x)\n", sp.log(1 + x**2), [ANY]),
    ("min_max", "def f(x, y):\n    return max(x, y) * 2 + min(x, y) * 3\n",
     sp.Max(x, y) * 2 + sp.Min(x, y) * 3, [ANY, ANY]),
    ("division", "def f(x, y):\n    return (x + 1) / (y * y + 1)\n", (x + 1) / (y**2 + 1),
     [ANY, ANY]),
    ("inline_call", "def g(a, b):\n    return a * b + sin(a)\n\ndef f(x, y):\n"
     "    return g(x, y) * g(y, x)\n",
     (x * y + sp.sin(x)) * (y * x + sp.sin(y)), [ANY, ANY]),
    ("nested_calls", "def g(a):\n    return a * a\n\ndef h(a):\n    return g(a) + g(a + 1)\n\n"
     "def f(x):\n    return h(h(x))\n",
     (lambda h: h(h(x)))(lambda a: a**2 + (a + 1) ** 2), [(-1.0, 1.0)]),
    ("logsumexp", "def f(x, y):\n    m = max(x, y)\n    return m + log(exp(x - m) + exp(y - m))\n",
     sp.log(sp.exp(x) + sp.exp(y)), [ANY, ANY]),
    ("vector_sum", "def f(x, y):\n    v = [x, y, x * y]\n    return sum(v * v)\n",
     x**2 + y**2 + (x * y) ** 2, [ANY, ANY]),
    ("dot", "def f(x, y):\n    return dot([x, y, 1], [y, x, x])\n", 2 * x * y + x, [ANY, ANY]),
    ("matvec", "def f(x, y):\n    m = [[1, 2], [3, 4]]\n    v = m @ [x, y]\n"
     "    return v[0] * v[1]\n", (x + 2 * y) * (3 * x + 4 * y), [ANY, ANY]),
    ("index_negative", "def f(x, y):\n    v = [x, y, x + y]\n    return v[-1] * v[0]\n",
     (x + y) * x, [ANY, ANY]),
    ("deep_chain", "def f(x):\n" + "    x = sin(x)\n" * 30 + "    return x\n",
     (lambda e: [e := sp.sin(e) for _ in range(30)][-1])(x), [ANY]),
    ("mixed", "def f(x, y):\n    z = x * y + sin(x)\n    return z ** 2 / (1 + exp(-y))\n",
     (x * y + sp.sin(x)) ** 2 / (1 + sp.exp(-y)), [ANY, ANY]),
]

SYMBOLS = [x, y, z]


def _module(src: str):  # type: ignore[no-untyped-def]
    return exprgrad.load_source(src, "corpus.exg")


def _points(domains: list[tuple[float, float]], rng: random.Random, n: int = 3
            ) -> list[list[float]]:
    return [[rng.uniform(lo, hi) for lo, hi in domains] for _ in range(n)]


def _close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def test_corpus_size() -> None:
    assert len(CORPUS) >= 30
    used = set()
    for _, src, _, _ in CORPUS:
        used.update(name for name in ("exp", "log", "tanh", "sigmoid", "relu", "sin", "cos",
                                      "sqrt", "abs", "softplus", "log1p", "min", "max")
                    if name + "(" in src)
    assert used == {"exp", "log", "tanh", "sigmoid", "relu", "sin", "cos", "sqrt", "abs",
                    "softplus", "log1p", "min", "max"}


@pytest.mark.parametrize("name,src,expr,domains", CORPUS, ids=[c[0] for c in CORPUS])
def test_value_and_gradient_match_sympy(name: str, src: str, expr: sp.Expr,
                                        domains: list[tuple[float, float]]) -> None:
    mod = _module(src)
    syms = SYMBOLS[: len(domains)]
    derivs = [sp.diff(expr, s) for s in syms]
    rng = random.Random(name)
    for point in _points(domains, rng):
        subs = {s: sp.Float(v, 30) for s, v in zip(syms, point)}
        value, grads = mod.f_grad(*point)
        assert value == mod.f(*point)
        assert _close(value, float(sp.N(expr.subs(subs), 30)), 1e-10), (name, point)
        assert len(grads) == len(syms)
        for s, d, g in zip(syms, derivs, grads):
            ref = float(sp.N(d.subs(subs), 30))
            assert _close(g, ref, 1e-9), (name, str(s), point, g, ref)


@pytest.mark.parametrize("name,src,expr,domains", CORPUS, ids=[c[0] for c in CORPUS])
def test_gradient_matches_central_differences(name: str, src: str, expr: sp.Expr,
                                              domains: list[tuple[float, float]]) -> None:
    mod = _module(src)
    rng = random.Random("fd" + name)
    for point in _points(domains, rng):
        _, grads = mod.f_grad(*point)
        # a random direction: the directional derivative must match
        direction = [rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0) for _ in point]
        h = 1e-6
        plus = mod.f(*[p + h * d for p, d in zip(point, direction)])
        minus = mod.f(*[p - h * d for p, d in zip(point, direction)])
        fd = (plus - minus) / (2 * h)
        analytic = math.fsum(g * d for g, d in zip(grads, direction))
        assert _close(analytic, fd, 1e-5), (name, point, analytic, fd)


def test_micrograd_published_values() -> None:
    mod = exprgrad.load(exprgrad_root() / "examples" / "micrograd.exg")
    value, (dx,) = mod.sanity_grad(-4.0)
    assert value == -20.0 and dx == 46.0
    g, (da, db) = mod.more_ops_grad(-4.0, 2.0)
    assert round(g, 4) == 24.7041
    assert round(da, 4) == 138.8338
    assert round(db, 4) == 645.5773


def exprgrad_root():  # type: ignore[no-untyped-def]
    from conftest import ROOT

    return ROOT
