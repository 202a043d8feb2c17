"""Compile-time constants and for loops, unrolled in the IR: RK4 and a nested triangular sum
against Python written here, on both backends and against sympy, and located errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import run_cli

import exprgrad
from exprgrad.api import compile_program, entry_point, load_source, module_from_code
from exprgrad.emit.arrays import generate_numpy

SOURCE = """N = 4
H = 0.1

def f(x, k):
    return -k * x

def rk4(x0, k):
    x = x0
    for i in range(N):
        k1 = f(x, k)
        k2 = f(x + H / 2 * k1, k)
        k3 = f(x + H / 2 * k2, k)
        k4 = f(x + H * k3, k)
        x += H / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x

def tri(v[4]):
    s = 0
    for i in range(1, N + 1):
        for j in range(i):
            s += v[i - 1] * v[j] * i
    return s
"""


def _rk4(x: float, k: float, n: int = 4, h: float = 0.1) -> float:
    for _ in range(n):
        k1 = -k * x
        k2 = -k * (x + h / 2 * k1)
        k3 = -k * (x + h / 2 * k2)
        k4 = -k * (x + h * k3)
        x += h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


def _tri(v: list[float]) -> float:
    return sum(v[i - 1] * v[j] * i for i in range(1, 5) for j in range(i))


def test_rk4_and_its_gradient_with_respect_to_the_start_and_the_rate() -> None:
    mod = exprgrad.load_source(SOURCE, "loops.exg")
    value, (dx0, dk) = mod.rk4_grad(1.5, 0.5)
    assert math.isclose(value, _rk4(1.5, 0.5), rel_tol=1e-14)
    assert math.isclose(value, 1.5 * math.exp(-0.2), rel_tol=1e-6)  # RK4 is accurate here
    assert math.isclose(dx0, _rk4(1.0, 0.5), rel_tol=1e-14)  # the map is linear in x0
    fd = (_rk4(1.5, 0.5 + 1e-6) - _rk4(1.5, 0.5 - 1e-6)) / 2e-6
    assert math.isclose(dk, fd, rel_tol=1e-7)
    batched = module_from_code(generate_numpy(compile_program(SOURCE, "loops.exg")), "n", "<n>")
    values, grads = entry_point(batched, "rk4", "grad")(np.array([1.5]), np.array([0.5]))
    assert math.isclose(values[0], value, rel_tol=1e-14)
    assert math.isclose(grads[1][0], dk, rel_tol=1e-13)


def test_nested_loops_with_an_outer_variable_as_bound() -> None:
    mod = exprgrad.load_source(SOURCE, "loops.exg")
    v = [1.0, -2.0, 0.5, 3.0]
    value, (grad,) = mod.tri_grad(v)
    assert value == _tri(v)
    for i in range(4):
        up, down = list(v), list(v)
        up[i] += 1e-6
        down[i] -= 1e-6
        assert math.isclose(grad[i], (_tri(up) - _tri(down)) / 2e-6, rel_tol=1e-7)


def test_check_agrees_with_sympy() -> None:
    assert exprgrad.check(compile_program(SOURCE, "loops.exg")).ok


@pytest.mark.parametrize("text, message", [
    ("def g(x, n):\n    for i in range(n):\n        x = x * 2\n    return x\n",
     "a loop bound must be a whole number known at compile time"),
    ("def g(x):\n    for i in range(2.5):\n        x = x * 2\n    return x\n",
     "a loop bound must be a whole number"),
    ("def g(x):\n    for i in range(3):\n        return x\n", "'return' inside a for loop"),
    ("N = 2\nN = 3\n", "'N' is already defined"),
    ("N = x\n", "'x' is not defined"),
    ("def g(x):\n    for i in range(10 ** 7):\n        x = x + i\n    return x\n",
     "MAX_UNROLLED_STATEMENTS"),
])
def test_mistakes_are_located(tmp_path, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "l.exg").write_text(text)
    result = run_cli("compile", str(tmp_path / "l.exg"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr and "^" in result.stderr


@pytest.mark.parametrize("bounds", ["range(1e19)", "range(0, 1e300)", "range(2 ** 70)"])
def test_a_huge_bound_is_the_limit_error(tmp_path, bounds: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "h.exg").write_text(f"def f(x):\n    for i in {bounds}:\n        x = x + 1\n"
                                    "    return x\n")
    result = run_cli("compile", str(tmp_path / "h.exg"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "MAX_UNROLLED_STATEMENTS" in result.stderr


def test_nested_loops_are_counted_before_unrolling(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """1000 x 999 inner statements are refused at the outer loop; a triangle of 100 (inner
    bounds from the outer variable) compiles and sums i for j < i."""
    (tmp_path / "n.exg").write_text("def f(x):\n    for i in range(1000):\n"
                                    "        for j in range(999):\n            x = x + 1\n"
                                    "    return x\n")
    result = run_cli("compile", str(tmp_path / "n.exg"))
    assert result.returncode == 2 and ":2:9: limit exceeded" in result.stderr, result.stderr
    text = ("def f(x):\n    s = 0 * x\n    for i in range(100):\n        for j in range(i):\n"
            "            s += x\n    return s\n")
    value, grad = load_source(text, "t.exg").f_grad(2.0)
    assert value == 2.0 * 4950 and grad == (4950.0,)
