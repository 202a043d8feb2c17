"""mean, one-argument max and min, softmax and pi: values and gradients on both backends
against Python written here and central differences, the tie convention, and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import run_cli

import exprgrad
from exprgrad.api import compile_program, entry_point, module_from_code
from exprgrad.emit.arrays import generate_numpy

SOURCE = """def f(v[4]):
    return mean(v) + max(v) * 2 - min(v) + dot(softmax(v), [1, 2, 3, 4]) + pi

def g(m[2, 3]):
    return max(m) + mean(m) * 3 + min(m)
"""


def _f(v: list[float]) -> float:
    e = [math.exp(x) for x in v]
    soft = [x / sum(e) for x in e]
    return (sum(v) / 4 + max(v) * 2 - min(v) + sum(s * w for s, w in zip(soft, [1, 2, 3, 4]))
            + math.pi)


@pytest.mark.parametrize("v", [[0.5, -1.0, 2.0, 0.25], [3.0, 1.0, -2.0, 0.0]])
def test_values_and_gradients_on_both_backends(v: list[float]) -> None:
    program = compile_program(SOURCE, "r.exg")
    scalar = exprgrad.load_source(SOURCE, "r.exg")
    batched = entry_point(module_from_code(generate_numpy(program), "n", "<n>"), "f", "grad")
    value, (grad,) = scalar.f_grad(v)
    assert math.isclose(value, _f(v), rel_tol=1e-13)
    for i in range(4):
        up, down = list(v), list(v)
        up[i] += 1e-6
        down[i] -= 1e-6
        assert math.isclose(grad[i], (_f(up) - _f(down)) / 2e-6, rel_tol=1e-6, abs_tol=1e-8)
    values, (grads,) = batched(np.array([v]))
    assert math.isclose(values[0], value, rel_tol=1e-13)
    np.testing.assert_allclose(grads[0], grad, rtol=1e-12)


def test_a_tie_goes_to_the_earlier_element() -> None:
    mod = exprgrad.load_source(SOURCE, "r.exg")
    value, (grad,) = mod.g_grad([[1.0, 5.0, 5.0], [-3.0, 0.0, -3.0]])
    assert value == 5.0 + 5.0 / 6.0 * 3 - 3.0  # mean (1 + 5 + 5 - 3 + 0 - 3) / 6
    # mean: 3/6 everywhere; max: the first 5; min: the first -3
    assert grad == [[0.5, 1.5, 0.5], [1.5, 0.5, 0.5]]


def test_check_agrees_with_sympy() -> None:
    assert exprgrad.check(compile_program(SOURCE, "r.exg")).ok


@pytest.mark.parametrize("body, message", [
    ("return mean(x)", "mean() takes a vector or a matrix, got a scalar"),
    ("return softmax(m)", "softmax() takes a vector, got a matrix"),
    ("return max(v, v, v)", "max() takes"),
    ("pi = 3\n    return pi", "'pi' is a built-in name"),
])
def test_misuse_is_located(tmp_path, body: str, message: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "r.exg").write_text(f"def f(x, v[2], m[2, 2]):\n    {body}\n")
    result = run_cli("compile", str(tmp_path / "r.exg"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr and "^" in result.stderr


MATRIX = """def f(a[2], b[3], m[3, 3]):
    v = concat(a, b, [1.0])
    return sum(v * v) + trace(m) * 2 + dot(diag(m), b) + sum(diag(b) @ b) + sum(eye(3) @ b)
"""


def _matrix(a: list[float], b: list[float], m: list[list[float]]) -> float:
    v = a + b + [1.0]
    diagonal = [m[i][i] for i in range(3)]
    return (sum(x * x for x in v) + sum(diagonal) * 2 + sum(p * q for p, q in zip(diagonal, b))
            + sum(x * x for x in b) + sum(b))


def test_concat_trace_diag_eye_on_both_backends() -> None:
    a, b = [1.0, -2.0], [3.0, 0.5, -1.0]
    m = [[1.0, 2.0, 3.0], [4.0, -5.0, 6.0], [7.0, 8.0, 9.5]]
    mod = exprgrad.load_source(MATRIX, "m.exg")
    value, (ga, gb, gm) = mod.f_grad(a, b, m)
    assert value == _matrix(a, b, m)
    # d/da = 2a; d/db = 2b (concat) + diag(m) + 2b (diag(b) @ b) + 1 (eye); d/dm: 2 + b_i on
    # the diagonal, 0 elsewhere
    assert ga == [2 * x for x in a]
    assert gb == [4 * x + m[i][i] + 1 for i, x in enumerate(b)]
    assert gm == [[2 + b[i] if i == j else 0.0 for j in range(3)] for i in range(3)]
    batched = module_from_code(generate_numpy(compile_program(MATRIX, "m.exg")), "n", "<n>")
    values, grads = entry_point(batched, "f", "grad")(np.array([a]), np.array([b]),
                                                       np.array([m]))
    assert values[0] == value
    np.testing.assert_allclose(grads[2][0], gm, rtol=1e-15)
    assert exprgrad.check(compile_program(MATRIX, "m.exg")).ok


@pytest.mark.parametrize("body, message", [
    ("return sum(concat(v, m))", "concat() takes one or more vectors"),
    ("return trace(r)", "trace() takes a square matrix, got a matrix [2, 3]"),
    ("return sum(eye(x))", "eye(n) takes a whole number n"),
])
def test_matrix_helpers_refuse_misuse(tmp_path, body: str, message: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "r.exg").write_text(f"def f(x, v[2], m[2, 2], r[2, 3]):\n    {body}\n")
    result = run_cli("compile", str(tmp_path / "r.exg"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr and "^" in result.stderr
