"""Reductions along one axis (sum, mean, max, min, logsumexp, softmax with axis=), reshape and
flatten: values against numpy written here, gradients against central differences and
hand-written formulas, both backends, the sympy check, the tie convention, and located errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import run_cli

import exprgrad
from exprgrad.api import compile_program

AXES = """def f(m[2, 3], w[3], u[2]):
    a = sum(m, axis=0) + 2 * mean(m, axis=0) + max(m, axis=-2) - min(m, axis=0)
    b = sum(m, axis=1) * 3 + mean(m, axis=-1) + max(m, axis=1) + min(m, axis=-1)
    c = logsumexp(m, axis=0) * w + softmax(m, axis=1)[1, :] * u[0]
    return dot(a, w) + dot(b, u) + sum(c) + sum(logsumexp(m, axis=-1) * u) + logsumexp(m)

def soft(m[2, 3], k[2, 3]):
    return sum(softmax(m, axis=0) * k) + 2 * sum(softmax(m, axis=-1) * k * k)
"""


def _lse(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    top = x.max(axis=axis, keepdims=True)
    out = top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True))
    return out.reshape(()) if axis is None else out.squeeze(axis)


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _f(m: np.ndarray, w: np.ndarray, u: np.ndarray) -> float:
    a = m.sum(0) + 2 * m.mean(0) + m.max(0) - m.min(0)
    b = m.sum(1) * 3 + m.mean(1) + m.max(1) + m.min(1)
    c = _lse(m, 0) * w + _softmax(m, 1)[1, :] * u[0]
    return float(a @ w + b @ u + c.sum() + (_lse(m, 1) * u).sum() + _lse(m))


def _soft(m: np.ndarray, k: np.ndarray) -> float:
    return float((_softmax(m, 0) * k).sum() + 2 * (_softmax(m, 1) * k * k).sum())


def _central(fn, args: list[np.ndarray], which: int, h: float = 1e-6) -> np.ndarray:  # type: ignore[no-untyped-def]
    x = args[which]
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up = [a.copy() for a in args]
        down = [a.copy() for a in args]
        up[which][idx] += h
        down[which][idx] -= h
        out[idx] = (fn(*up) - fn(*down)) / (2 * h)
    return out


M = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])


@pytest.mark.parametrize("m", [M, -M[::-1] * 1.7])
def test_axis_values_and_gradients_on_both_backends(m: np.ndarray) -> None:
    w, u = np.array([0.3, -1.2, 0.8]), np.array([1.1, -0.4])
    scalar = exprgrad.load_source(AXES, "a.exg")
    batched = exprgrad.load_source(AXES, "a.exg", backend="numpy")
    value, grads = scalar.f_grad(m.tolist(), w.tolist(), u.tolist())
    assert math.isclose(value, _f(m, w, u), rel_tol=1e-13)
    for which, grad in enumerate(grads):
        np.testing.assert_allclose(grad, _central(_f, [m, w, u], which), rtol=1e-6, atol=1e-8)
    values, bgrads = batched.f_grad(np.array([m, m * 0.5]), np.array([w, w]), np.array([u, u]))
    assert math.isclose(values[0], value, rel_tol=1e-13)
    assert math.isclose(values[1], _f(m * 0.5, w, u), rel_tol=1e-13)
    for grad, bgrad in zip(grads, bgrads):
        np.testing.assert_allclose(bgrad[0], grad, rtol=1e-12, atol=1e-15)


def test_softmax_along_an_axis_keeps_the_shape() -> None:
    m = np.array([[0.2, -0.7, 1.3], [0.9, 0.4, -1.1]])
    k = np.array([[1.0, 2.0, -1.0], [0.5, -0.5, 3.0]])
    mod = exprgrad.load_source(AXES, "a.exg")
    value, (gm, gk) = mod.soft_grad(m.tolist(), k.tolist())
    assert math.isclose(value, _soft(m, k), rel_tol=1e-13)
    # d/dm of sum(s * k) with s the softmax along an axis: s * (k - sum(s * k) along that axis)
    s0, s1 = _softmax(m, 0), _softmax(m, 1)
    k2 = 2 * k * k
    hand = (s0 * (k - (s0 * k).sum(0, keepdims=True))
            + s1 * (k2 - (s1 * k2).sum(1, keepdims=True)))
    np.testing.assert_allclose(gm, hand, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gk, s0 + 4 * s1 * k, rtol=1e-12)
    batched = exprgrad.load_source(AXES, "a.exg", backend="numpy")
    values, (bm, bk) = batched.soft_grad(np.array([m]), np.array([k]))
    assert math.isclose(values[0], value, rel_tol=1e-13)
    np.testing.assert_allclose(bm[0], gm, rtol=1e-12, atol=1e-15)


def test_a_tie_along_an_axis_goes_to_the_earlier_element() -> None:
    source = ("def f(m[3, 2]):\n    return dot(max(m, axis=0), [1, 10]) "
              "+ dot(min(m, axis=1), [100, 1000, 10000])\n")
    m = [[1.0, 4.0], [1.0, 4.0], [0.0, 0.0]]
    for backend in ("python", "numpy"):
        mod = exprgrad.load_source(source, "t.exg", backend=backend)
        args = [m] if backend == "python" else [np.array([m])]
        value, (grad,) = mod.f_grad(*args)
        if backend == "numpy":
            value, grad = value[0], grad[0].tolist()
        # max down each column: rows 0 and 1 tie, row 0 wins; min along each row: 1 (first
        # column), 1 (first), 0 (first of the tie)
        assert value == 1 + 40 + 100 + 1000 + 0
        assert grad == [[101.0, 10.0], [1000.0, 0.0], [10000.0, 0.0]]


def test_a_vector_takes_axis_0_or_minus_1_as_the_whole_vector() -> None:
    source = ("def f(v[3]):\n    return sum(v, axis=0) + mean(v, axis=-1) * max(v, axis=0) "
              "+ dot(softmax(v, axis=-1), [1, 2, 3]) + logsumexp(v, axis=0)\n"
              "def g(v[3]):\n    return sum(v) + mean(v) * max(v) + dot(softmax(v), [1, 2, 3]) "
              "+ logsumexp(v)\n")
    mod = exprgrad.load_source(source, "v.exg")
    v = [0.25, -1.5, 2.0]
    assert mod.f_grad(v) == mod.g_grad(v)
    assert math.isclose(mod.f(v), sum(v) + sum(v) / 3 * 2.0 + float(
        _softmax(np.array(v), 0) @ [1, 2, 3]) + float(_lse(np.array(v))), rel_tol=1e-13)


def test_the_axis_may_be_a_constant_or_a_loop_variable() -> None:
    source = ("A = -1\n"
              "def f(m[2, 3]):\n    s = 0\n    for k in range(2):\n"
              "        s += sum(sum(m, axis=k) * (k + 1))\n    return s + sum(max(m, axis=A))\n")
    m = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]])
    value, (grad,) = exprgrad.load_source(source, "c.exg").f_grad(m.tolist())
    assert value == m.sum() * 3 + m.max(1).sum()
    # 1 + 2 from the two sums, 1 more where each row has its maximum (3, then 4)
    assert grad == [[3.0, 3.0, 4.0], [3.0, 4.0, 3.0]]


RESHAPE = """def f(v[6], m[2, 3], x):
    a = reshape(v, [2, 3]) * m
    b = reshape(m, [3, 2]) @ [1, -2]
    c = reshape(m, [-1]) * v
    d = reshape(v, [3, -1])
    e = sum(reshape(x, [1, 1]) * 7) + sum(reshape(reshape(m, [6]), [2, 3]) * m)
    return sum(a) + dot(b, v[0:3]) + sum(c * c) + d[2, 1] * 5 + dot(flatten(m), v) + e
"""


def _reshape_f(v: np.ndarray, m: np.ndarray, x: np.ndarray) -> float:
    a = v.reshape(2, 3) * m
    b = m.reshape(3, 2) @ np.array([1.0, -2.0])
    c = m.reshape(-1) * v
    d = v.reshape(3, -1)
    return float(a.sum() + b @ v[0:3] + (c * c).sum() + d[2, 1] * 5 + m.ravel() @ v
                 + 7 * float(x) + (m * m).sum())


def test_reshape_and_flatten_on_both_backends() -> None:
    v = np.array([0.5, -1.0, 2.0, 1.5, 0.25, -0.75])
    m = np.array([[1.0, 2.0, -3.0], [0.5, -0.25, 4.0]])
    x = np.array(0.3)
    value, (gv, gm, gx) = exprgrad.load_source(RESHAPE, "r.exg").f_grad(v.tolist(), m.tolist(),
                                                                      0.3)
    assert math.isclose(value, _reshape_f(v, m, x), rel_tol=1e-13)
    # hand-written: d/dv = m (a) + b on the first three + 2 c m (c) + 5 at v[5] (d) + m (flatten)
    b = m.reshape(3, 2) @ np.array([1.0, -2.0])
    hand_v = m.ravel() * 2 + 2 * m.ravel() ** 2 * v + np.array([*b, 0, 0, 0])
    hand_v[5] += 5
    np.testing.assert_allclose(gv, hand_v, rtol=1e-14)
    assert gx == 7.0
    np.testing.assert_allclose(gm, _central(_reshape_f, [v, m, x], 1), rtol=1e-7)
    batched = exprgrad.load_source(RESHAPE, "r.exg", backend="numpy")
    values, (bv, bm, bx) = batched.f_grad(np.array([v]), np.array([m]), np.array([0.3]))
    assert math.isclose(values[0], value, rel_tol=1e-13)
    np.testing.assert_allclose(bv[0], gv, rtol=1e-13)
    np.testing.assert_allclose(bm[0], gm, rtol=1e-13)


def test_reshape_is_row_major() -> None:
    source = "def f(v[6]):\n    return reshape(v, [2, 3])\ndef g(m[2, 3]):\n    return flatten(m)\n"
    mod = exprgrad.load_source(source, "o.exg")
    assert mod.f([1, 2, 3, 4, 5, 6]) == [[1, 2, 3], [4, 5, 6]]
    assert mod.g([[1, 2, 3], [4, 5, 6]]) == [1, 2, 3, 4, 5, 6]


def test_check_agrees_with_sympy() -> None:
    assert exprgrad.check(compile_program(AXES, "a.exg")).ok
    assert exprgrad.check(compile_program(RESHAPE, "r.exg")).ok


def test_the_docs_examples_compile_and_check(tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = """def xent(logits[2, 3], onehot[2, 3]):
    return mean(logsumexp(logits, axis=1) - sum(logits * onehot, axis=1))

def f(v[6], m[2, 3]):
    return sum(reshape(v, [2, 3]) * m) + dot(flatten(m), v) + sum(reshape(m, [3, 2]) @ [1, 2])
"""
    (tmp_path / "d.exg").write_text(source)
    result = run_cli("check", str(tmp_path / "d.exg"))
    assert result.returncode == 0, result.stdout + result.stderr
    mod = exprgrad.load_source(source, "d.exg")
    logits = np.array([[0.1, 2.0, -1.0], [1.0, 1.0, -2.0]])
    onehot = np.eye(3)[[1, 2]]
    expected = float(np.mean(_lse(logits, 1) - (logits * onehot).sum(1)))
    assert math.isclose(mod.xent(logits.tolist(), onehot.tolist()), expected, rel_tol=1e-13)


@pytest.mark.parametrize("body, message, col", [
    ("return sum(x, axis=0)", "sum(x, axis=0) needs a vector or a matrix, got a scalar", 16),
    ("return sum(m, axis=2)", "axis 2 is out of range for a matrix [2, 3]", 24),
    ("return sum(m, axis=-3)", "axis -3 is out of range for a matrix [2, 3]", 24),
    ("return mean(v, axis=1)", "axis 1 is out of range for a vector [2]", 25),
    ("return sum(m, axis=0.5)", "an axis must be a whole number known at compile time", 24),
    ("return sum(m, axis=x)", "an axis must be a whole number known at compile time", 24),
    ("return sum(m, axes=0)", "sum() takes no keyword 'axes'", 19),
    ("return sum(m, axis=0, axis=1)", "axis= is given twice", 27),
    ("return max(m, m, axis=0)", "max(x, axis=k) takes one vector or matrix, got 2", 12),
    ("return dot(v, v, axis=0)", "'dot' takes no keyword arguments", 22),
    ("return sum(reshape(m, [4, 2]))",
     "reshape() cannot turn a matrix [2, 3] (6 elements) into [4, 2]", 27),
    ("return sum(reshape(m, [-1, 4]))", "reshape() cannot turn a matrix [2, 3]", 27),
    ("return sum(reshape(m, [1, 2, 3]))",
     "values have rank at most 2; the shape asks for 3 dimensions", 27),
    ("return sum(reshape(m, [0, 6]))", "reshape()'s sizes must be whole numbers from 1", 27),
    ("return sum(reshape(m, [-1, -1]))", "reshape()'s sizes must be whole numbers from 1", 27),
    ("return sum(reshape(m, [v[0], 3]))", "reshape()'s sizes must be whole numbers from 1", 27),
    ("return sum(reshape(m, 6))", "reshape()'s shape is a list of one or two sizes", 27),
    ("return sum(reshape(m))", "reshape() takes a value and a shape, got 1 argument", 16),
    ("return sum(flatten(m, m))", "flatten() takes one argument, got 2", 16),
    ("reshape = 3\n    return x", "'reshape' is a built-in name", 5),
])
def test_misuse_is_located(tmp_path, body: str, message: str, col: int) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "r.exg").write_text(f"def f(x, v[2], m[2, 3]):\n    {body}\n")
    result = run_cli("compile", str(tmp_path / "r.exg"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr and "^" in result.stderr
    assert f"r.exg:2:{col}:" in result.stderr, result.stderr
