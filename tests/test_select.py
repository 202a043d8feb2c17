"""Comparisons and where(): values and gradients on both backends against formulas written
here, the gradient convention at a tie, errors, and a Huber-loss regression trained."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import EXAMPLES, run_cli

import exprgrad
from exprgrad.api import compile_program, entry_point, module_from_code
from exprgrad.emit.arrays import generate_numpy
from exprgrad.emit.scalar import generate

SOURCE = """def huber(r):
    return where(abs(r) <= 1.0, 0.5 * r ** 2, abs(r) - 0.5)

def kink(x):
    return where(x <= 1, x * x, 2 * x - 1)

def cmp(x[3], y[3]):
    return sum((x < y) + (x <= y) * 2 + (x > y) * 4 + (x >= y) * 8 + (x == y) * 16 + (x != y) * 32)

def clamp(x, lo, hi):
    return where(x < lo, lo, where(x > hi, hi, x))
"""


def _both(name: str):  # type: ignore[no-untyped-def]
    program = compile_program(SOURCE, "sel.exg")
    scalar = entry_point(module_from_code(generate(program), "s", "<s>"), name, "grad")
    batched = entry_point(module_from_code(generate_numpy(program), "n", "<n>"), name, "grad")
    return scalar, batched


@pytest.mark.parametrize("r", [-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.5])
def test_huber_values_and_gradients(r: float) -> None:
    want = 0.5 * r * r if abs(r) <= 1 else abs(r) - 0.5
    dwant = r if abs(r) <= 1 else math.copysign(1.0, r)
    scalar, batched = _both("huber")
    value, (grad,) = scalar(r)
    assert value == want and grad == dwant
    values, (grads,) = batched(np.array([r, r]))
    assert list(values) == [want, want] and list(grads) == [dwant, dwant]


def test_at_a_tie_the_branch_picked_gives_the_gradient() -> None:
    scalar, batched = _both("kink")
    assert scalar(1.0) == (1.0, (2.0,))  # x <= 1 holds: the gradient of x * x
    assert scalar(1.0 + 1e-12)[1] == (2.0,)  # 2x - 1 beyond
    values, (grads,) = batched(np.array([1.0, 0.5, 3.0]))
    assert list(values) == [1.0, 0.25, 5.0] and list(grads) == [2.0, 1.0, 2.0]


def test_comparisons_are_zero_one_with_no_gradient() -> None:
    scalar, batched = _both("cmp")
    x, y = [1.0, 2.0, math.nan], [2.0, 2.0, 2.0]
    # element 0: < <= != (1 + 2 + 32); element 1: <= >= == (2 + 8 + 16); nan: only != (32)
    value, grads = scalar(x, y)
    assert value == 35 + 26 + 32 and grads == ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    values, _ = batched(np.array([x]), np.array([y]))
    assert list(values) == [93.0]


def test_clamp_gradient_goes_to_the_bound_returned() -> None:
    scalar, _ = _both("clamp")
    assert scalar(5.0, 0.0, 2.0) == (2.0, (0.0, 0.0, 1.0))
    assert scalar(-1.0, 0.0, 2.0) == (0.0, (0.0, 1.0, 0.0))
    assert scalar(1.5, 0.0, 2.0) == (1.5, (1.0, 0.0, 0.0))


def test_check_agrees_with_sympy() -> None:
    report = exprgrad.check(compile_program(SOURCE, "sel.exg"))
    assert report.ok


@pytest.mark.parametrize("text, message", [
    ("def f(a, b, c):\n    return a < b < c\n", "sel.exg:2:18"),
    ("def f(a, b):\n    return where(a, b)\n", "where() takes 3 arguments"),
    ("def f(a[2], b[3]):\n    return a < b\n", "needs equal shapes"),
])
def test_mistakes_are_located(tmp_path, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "sel.exg").write_text(text)
    result = run_cli("compile", str(tmp_path / "sel.exg"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr and "^" in result.stderr


def test_huber_regression_ignores_the_outlier() -> None:
    """examples/huber.exg: y = 2x + 1 with one outlier. The Huber fit stays near the line
    (least squares, computed here, is pulled far off); the final loss is the Huber loss of the
    returned parameters, computed here."""
    program = compile_program((EXAMPLES / "huber.exg").read_text(), "huber.exg")
    result = exprgrad.train(program, progress=False)
    a, b = result.params
    xs, ys = program.data["xs"], program.data["ys"]
    assert abs(a - 2.0) < 0.05 and abs(b - 1.0) < 0.2
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    assert abs(slope - 2.0) > 0.5  # what the outlier does to least squares
    huber = [0.5 * r * r if abs(r) <= 1 else abs(r) - 0.5
             for r in (a * x + b - y for x, y in zip(xs, ys))]
    assert result.losses[0] > 2 * sum(huber)
    mod = exprgrad.load(EXAMPLES / "huber.exg")
    assert math.isclose(sum(mod.loss(result.params, x, y) for x, y in zip(xs, ys)),
                        math.fsum(huber), rel_tol=1e-12)
