"""Constant folding computes what the generated code computes: an expression of numbers known
at compile time (literals, constants, loop variables) against the numbers IEEE-754 and
docs/numerics.md give, and against the same expression taking its number as an argument."""

from __future__ import annotations

import math

import pytest

from exprgrad.api import load_source

NAN, INF = math.nan, math.inf

# (expression of K = -2 and literals, the same taking its numbers from the argument x = -2,
# expected); M is -0.0 computed at run time (x * 0.0 is the strong zero, +0.0)
M = "(1 / (x * 1e308 * 1e308))"
CASES = [
    ("K ** 3", "x ** 3", -8.0),
    ("K ** 2", "x ** 2", 4.0),
    ("K ** -1", "x ** -1", -0.5),
    ("K ** K", "x ** x", 0.25),
    ("(-1) ** 5", "(x / 2) ** 5", -1.0),
    ("(0/0) == (0/0)", "(x * (0/0)) == (x * (0/0))", 0.0),
    ("(0/0) != (0/0)", "(x * (0/0)) != (x * (0/0))", 1.0),
    ("min(0/0, 1)", "min(x * (0/0), 1)", NAN),
    ("max(0/0, 1)", "max(x * (0/0), 1)", NAN),
    ("max([0/0, 1, 2])", "max([x * (0/0), 1, 2])", NAN),
    ("(0/0) / 0", "(x * (0/0)) / 0", NAN),
    ("(-0.0) / 0", f"{M} / 0", NAN),
    ("log(-0.0)", f"log({M})", -INF),
    ("(-0.0) ** -1", f"{M} ** -1", -INF),
    ("(-0.0) ** -3", f"{M} ** -3", -INF),
    ("(-0.0) ** -2", f"{M} ** -2", INF),
    ("where(-0.0, 1, 2)", f"where({M}, 1, 2)", 2.0),
]


def _same(a: float, b: float) -> bool:
    return repr(a) == repr(b) or (math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("folded, runtime, expected", CASES)
def test_folding_agrees_with_ieee_and_the_generated_code(folded: str, runtime: str,
                                                         expected: float) -> None:
    text = (f"K = -2\n\ndef c(x):\n    return {folded}\n\ndef r(x):\n    return {runtime}\n")
    mod = load_source(text, "fold.exg")
    assert _same(mod.c(1.0), expected), (folded, mod.c(1.0))
    assert _same(mod.r(-2.0), expected), (runtime, mod.r(-2.0))


def test_an_alternating_sum_in_a_loop() -> None:
    """The attacker's case: (-1) ** i inside a loop was nan (folding compared 3.0 != 3)."""
    text = ("N = 4\ndef f(x[N]):\n    s = 0\n    for i in range(N):\n"
            "        s += (-1) ** i * x[i]\n    return s\n")
    value, grad = load_source(text, "alt.exg").f_grad([1.0, 2.0, 3.0, 4.0])
    assert value == -2.0 and list(grad[0]) == [1.0, -1.0, 1.0, -1.0]
