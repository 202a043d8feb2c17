"""Slices with constant bounds (``x[1:4]``, ``m[:, 0]``, ``m[2, :]``, ``m[0:2, 1:3]``): values and
gradients against Python slicing written here, on both backends, sympy's check, and errors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli

import exprgrad
from exprgrad.api import compile_program, entry_point, module_from_code
from exprgrad.emit.arrays import generate_numpy

SOURCE = """def f(x[5], m[3, 4]):
    a = x[1:4]
    b = m[:, 0]
    c = m[2, :]
    d = m[0:2, 1:3]
    return dot(a, b) + sum(c) * 2 + sum(d * d) + x[-1] + sum(x[:2]) + sum(x[3:]) + m[-1, -2:][0]
"""


def _f(x: list[float], m: list[list[float]]) -> float:
    a, b, c = x[1:4], [r[0] for r in m], m[2]
    d = [r[1:3] for r in m[0:2]]
    return (sum(p * q for p, q in zip(a, b)) + sum(c) * 2 + sum(v * v for r in d for v in r)
            + x[-1] + sum(x[:2]) + sum(x[3:]) + m[-1][-2:][0])


def test_values_and_gradients_on_both_backends() -> None:
    x = [1.0, -2.0, 3.5, 0.5, 2.0]
    m = [[1.0, 2.0, 3.0, 4.0], [5.0, -6.0, 7.0, 8.0], [9.0, 10.0, 0.25, 12.0]]
    mod = exprgrad.load_source(SOURCE, "s.exg")
    value, (gx, gm) = mod.f_grad(x, m)
    assert value == _f(x, m)
    for i in range(5):  # (f is quadratic: central differences are exact up to rounding)
        up, down = list(x), list(x)
        up[i] += 0.5
        down[i] -= 0.5
        assert abs(gx[i] - (_f(up, m) - _f(down, m))) < 1e-12
    for i in range(3):
        for j in range(4):
            up, down = [list(r) for r in m], [list(r) for r in m]
            up[i][j] += 0.5
            down[i][j] -= 0.5
            assert abs(gm[i][j] - (_f(x, up) - _f(x, down))) < 1e-12
    batched = module_from_code(generate_numpy(compile_program(SOURCE, "s.exg")), "n", "<n>")
    values, (bx, bm) = entry_point(batched, "f", "grad")(np.array([x]), np.array([m]))
    assert values[0] == value
    np.testing.assert_allclose(bx[0], gx, rtol=1e-15)
    np.testing.assert_allclose(bm[0], gm, rtol=1e-15)


def test_check_agrees_with_sympy() -> None:
    assert exprgrad.check(compile_program(SOURCE, "s.exg")).ok


@pytest.mark.parametrize("expr, message", [
    ("sum(x[2:9])", "the slice 2:9 is empty or outside an axis of 5"),
    ("sum(x[3:3])", "the slice 3:3 is empty"),
    ("sum(x[0:y])", "a slice bound must be a whole number known at compile time"),
    ("sum(m[:, 4])", "index 4 is out of range for an axis of 4"),
    ("sum(m[0, 0, :])", "3 indices for a matrix [3, 4]"),
])
def test_misuse_is_located(tmp_path, expr: str, message: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "s.exg").write_text(f"def f(x[5], m[3, 4], y):\n    return {expr}\n")
    result = run_cli("compile", str(tmp_path / "s.exg"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr and "^" in result.stderr


@pytest.mark.parametrize("text", [
    "def f(x[3]):\n    return x[0/0]\n",
    "def f(x[3]):\n    return sum(x[0:1/0])\n",
    "def f(x):\n    for i in range(1/0):\n        x = x + 1\n    return x\n",
    "def f(x):\n    return sum(eye(0/0))\n",
])
def test_a_nan_or_infinite_index_or_bound_is_an_error_not_a_crash(tmp_path, text: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "n.exg").write_text(text)
    result = run_cli("compile", str(tmp_path / "n.exg"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "whole number" in result.stderr and "^" in result.stderr
