"""examples/attention.exg (a user-defined layer holding a single self-attention head, matrix
products, softmax along axis 1): its value against attention written here in plain Python from
the parameters by name, its gradients against central differences of that reference, the python
and numpy backends against each other, and training."""

from __future__ import annotations

import math
import re
import types

import numpy as np
import pytest
from conftest import EXAMPLES

import exprgrad
from exprgrad.api import compile_program

PATH = EXAMPLES / "attention.exg"
PROGRAM = compile_program(PATH.read_text(), "attention.exg")
SEQS: list[list[list[float]]] = PROGRAM.data["seqs"]
TARGETS: list[float] = PROGRAM.data["targets"]
Matrix = list[list[float]]


@pytest.fixture(scope="module")
def mod() -> types.ModuleType:
    return exprgrad.load(PATH)


@pytest.fixture(scope="module")
def npmod() -> types.ModuleType:
    return exprgrad.load(PATH, backend="numpy")


def _project(x: Matrix, w: Matrix) -> Matrix:
    """Each token (a row of x) times W^T: row t is W @ x[t]."""
    return [[sum(wr[j] * tok[j] for j in range(len(tok))) for wr in w] for tok in x]


def _attention(p: dict, x: Matrix) -> Matrix:  # type: ignore[type-arg]
    q, k, v = (_project(x, p[f"head.{w}"]) for w in ("Wq", "Wk", "Wv"))
    scale = math.sqrt(len(q[0]))
    out = []
    for qi in q:
        scores = [sum(a * b for a, b in zip(qi, kj)) / scale for kj in k]
        top = max(scores)
        e = [math.exp(s - top) for s in scores]
        weights = [ej / sum(e) for ej in e]
        out.append([sum(weights[j] * v[j][c] for j in range(len(v))) for c in range(len(v[0]))])
    return out


def _predict(p: dict, x: Matrix) -> float:  # type: ignore[type-arg]
    rows = _attention(p, x)
    return sum(sum(w * r for w, r in zip(p["wout"], row)) for row in rows) / len(rows) + p["bout"]


def _loss(p: dict, x: Matrix, y: float) -> float:  # type: ignore[type-arg]
    return (_predict(p, x) - y) ** 2


def test_the_shapes_and_names_are_those_of_the_file(mod: types.ModuleType) -> None:
    by_name = mod.params_by_name(mod.init_params(0))
    assert list(by_name) == ["head.Wq", "head.Wk", "head.Wv", "wout", "bout"]
    assert [len(by_name["head.Wq"]), len(by_name["head.Wq"][0])] == [4, 4]
    assert mod.PARAM_COUNT == 3 * 16 + 4 + 1
    assert all(len(s) == 3 and len(s[0]) == 4 for s in SEQS) and len(SEQS) == len(TARGETS)


@pytest.mark.parametrize("seed", [0, 5])
def test_the_compiled_head_is_scaled_dot_product_attention(mod: types.ModuleType,
                                                            seed: int) -> None:
    params = mod.init_params(seed)
    by_name = mod.params_by_name(params)
    for x, y in zip(SEQS, TARGETS):
        assert math.isclose(mod.predict(params, x), _predict(by_name, x), rel_tol=1e-12)
        assert math.isclose(mod.loss(params, x, y), _loss(by_name, x, y), rel_tol=1e-12)


def test_with_zero_queries_every_token_attends_uniformly(mod: types.ModuleType) -> None:
    """Wq = 0 makes every score 0, so each softmax row is 1/T and the output is the mean of the
    values: the prediction is wout . Wv . mean(x) + bout, written here without any softmax."""
    by_name = mod.params_by_name(mod.init_params(2))
    by_name["head.Wq"] = [[0.0] * 4 for _ in range(4)]
    by_name["bout"] = 0.25
    params = mod.params_from_names(by_name)
    for x in SEQS:
        mean_x = [sum(tok[j] for tok in x) / 3 for j in range(4)]
        v = [sum(w * m for w, m in zip(row, mean_x)) for row in by_name["head.Wv"]]
        want = sum(w * vi for w, vi in zip(by_name["wout"], v)) + 0.25
        assert math.isclose(mod.predict(params, x), want, rel_tol=1e-12)


def test_sharp_queries_pick_one_token(mod: types.ModuleType) -> None:
    """Queries and keys that are 60 times feature 0: with feature 0 positive in every token,
    each query's softmax saturates on the token with the largest feature 0 (scores apart by
    144 or more), so every output row is that token's value row."""
    by_name = mod.params_by_name(mod.init_params(0))
    big = [[0.0] * 4 for _ in range(4)]
    big[0][0] = 60.0
    by_name["head.Wq"] = by_name["head.Wk"] = big
    params = mod.params_from_names(by_name)
    x = [[0.9, 0.1, -0.2, 0.3], [0.5, -0.4, 0.6, 0.0], [0.2, 0.7, 0.1, -0.5]]
    v0 = [sum(w * xj for w, xj in zip(row, x[0])) for row in by_name["head.Wv"]]
    want = sum(w * v for w, v in zip(by_name["wout"], v0)) + by_name["bout"]
    assert math.isclose(mod.predict(params, x), want, rel_tol=1e-6, abs_tol=1e-9)


def test_gradients_match_central_differences(mod: types.ModuleType) -> None:
    params = mod.init_params(0)
    x, y = SEQS[1], TARGETS[1]
    value, grad = mod.loss_grad(params, x, y)
    assert math.isclose(value, _loss(mod.params_by_name(params), x, y), rel_tol=1e-12)
    h = 1e-6
    for k in range(len(params)):
        up, down = list(params), list(params)
        up[k] += h
        down[k] -= h
        fd = (_loss(mod.params_by_name(up), x, y) - _loss(mod.params_by_name(down), x, y)) / (2 * h)
        assert math.isclose(grad[k], fd, rel_tol=1e-6, abs_tol=1e-9), mod.param_names()[k]
    assert sum(abs(g) for g in grad[:48]) > 1e-3  # the head's weights do receive gradient
    # the gradient with respect to the tokens, through the vjp
    _, dparams, (dx, dy) = mod.loss_vjp(params, x, y, 1.0)
    assert np.allclose(dparams, grad, rtol=1e-12, atol=1e-15)
    by_name = mod.params_by_name(params)
    for t in range(3):
        for j in range(4):
            up = [list(r) for r in x]
            down = [list(r) for r in x]
            up[t][j] += h
            down[t][j] -= h
            fd = (_loss(by_name, up, y) - _loss(by_name, down, y)) / (2 * h)
            assert math.isclose(dx[t][j], fd, rel_tol=1e-6, abs_tol=1e-9), (t, j)
    assert math.isclose(dy, -2 * (_predict(by_name, x) - y), rel_tol=1e-12)


def test_the_python_and_numpy_backends_agree(mod: types.ModuleType,
                                             npmod: types.ModuleType) -> None:
    for seed in (0, 7):
        params = mod.init_params(seed)
        assert np.array_equal(npmod.init_params(seed), params)
        values, grad = npmod.loss_grad(params, np.asarray(SEQS), np.asarray(TARGETS))
        want_grad = [0.0] * len(params)
        for i, (x, y) in enumerate(zip(SEQS, TARGETS)):
            v, g = mod.loss_grad(params, x, y)
            assert abs(values[i] - v) <= 1e-12 * max(1.0, abs(v))
            want_grad = [a + b for a, b in zip(want_grad, g)]
        np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-12)
        preds = npmod.predict(params, np.asarray(SEQS))
        np.testing.assert_allclose(preds, [mod.predict(params, x) for x in SEQS],
                                   rtol=1e-12, atol=1e-12)


def test_attention_learns_its_targets_on_both_backends() -> None:
    python = exprgrad.train(PROGRAM, progress=False)
    numpy = exprgrad.train(PROGRAM, progress=False, backend="numpy")
    for result in (python, numpy):
        assert result.stopped is None and len(result.losses) == 500
        assert result.losses[-1] < 1e-6 < 1e-2 * result.losses[0]
    # the same run on both backends: the first steps agree to rounding
    np.testing.assert_allclose(numpy.losses[:50], python.losses[:50], rtol=1e-9)
    # the trained parameters reproduce the targets through the reference
    mod = exprgrad.load(PATH)
    by_name = mod.params_by_name(python.params)
    for x, y in zip(SEQS, TARGETS):
        assert abs(_predict(by_name, x) - y) < 1e-3


def test_a_smaller_head_agrees_with_sympy() -> None:
    """`exprgrad check` on the example runs out of its sympy budget at T = 3, D = K = 4, leaving
    finite differences; two tokens of dimension 2 (the same file, its constants rewritten and
    its data dropped) are small enough for sympy to compare every sampled partial."""
    source = PATH.read_text()
    for name, value in (("T", 2), ("D", 2), ("K", 2)):
        source, n = re.subn(rf"^{name} = \d+", f"{name} = {value}", source, flags=re.M)
        assert n == 1
    source = re.sub(r"^(data|train) .*$", "", source, flags=re.M)
    report = exprgrad.check(compile_program(source, "attention_small.exg"), "loss", budget=120)
    assert not [line for line in report.lines if line.status == "mismatch"]
    sympy = [line for line in report.lines
             if line.method in ("symbolic", "numeric") and line.status == "ok"]
    assert len(sympy) >= 10, report
