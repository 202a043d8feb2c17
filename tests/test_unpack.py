"""Unpacking the results of a def that returns several values (``h, c = cell(x, h, c)``) and
the elements of a vector: values and gradients on both backends against Python written here,
sympy's check, and located errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import run_cli

import exprgrad
from exprgrad.api import compile_program, entry_point, module_from_code
from exprgrad.emit.arrays import generate_numpy

SOURCE = """def cell(x, h, c):
    c2 = tanh(x + h) * 0.5 + c * 0.9
    h2 = tanh(c2)
    return h2, c2

def run(x):
    h, c = cell(x, 0.0, 0.0)
    h, c = cell(x, h, c)
    r, t = hypot(h, c), atan2(c, h)
    a, b, = [r, t]
    return a * b
"""


def _run(x: float) -> float:
    def cell(x: float, h: float, c: float) -> tuple[float, float]:
        c2 = math.tanh(x + h) * 0.5 + c * 0.9
        return math.tanh(c2), c2

    h, c = cell(x, 0.0, 0.0)
    h, c = cell(x, h, c)
    return math.hypot(h, c) * math.atan2(c, h)


@pytest.mark.parametrize("x", [-1.3, 0.3, 0.7, 2.0])  # (x = 0: hypot(0, 0), no gradient)
def test_unpacked_results_on_both_backends(x: float) -> None:
    scalar = exprgrad.load_source(SOURCE, "u.exg")
    batched = module_from_code(generate_numpy(compile_program(SOURCE, "u.exg")), "n", "<n>")
    value, (grad,) = scalar.run_grad(x)
    fd = (_run(x + 1e-6) - _run(x - 1e-6)) / 2e-6
    assert math.isclose(value, _run(x), rel_tol=1e-12, abs_tol=1e-15)
    assert math.isclose(grad, fd, rel_tol=1e-6, abs_tol=1e-9)
    values, (grads,) = entry_point(batched, "run", "grad")(np.array([x]))
    assert math.isclose(values[0], value, rel_tol=1e-12, abs_tol=1e-15)
    assert math.isclose(grads[0], grad, rel_tol=1e-12, abs_tol=1e-15)


def test_check_agrees_with_sympy() -> None:
    assert exprgrad.check(compile_program(SOURCE, "u.exg")).ok


@pytest.mark.parametrize("body, message", [
    ("    a, b, c = two(x)\n    return a\n", "'two' returns 2 values, not 3"),
    ("    return two(x)\n", "unpack them"),
    ("    a, b = x\n    return a\n", "2 names need 2 values"),
    ("    a, b = [x, x, x]\n    return a\n", "a vector [3]"),
])
def test_a_wrong_count_is_located(tmp_path, body: str, message: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "u.exg").write_text(f"def two(x):\n    return x, 2 * x\ndef g(x):\n{body}")
    result = run_cli("compile", str(tmp_path / "u.exg"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr and "u.exg:4:" in result.stderr and "^" in result.stderr
