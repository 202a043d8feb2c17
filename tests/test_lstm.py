"""examples/lstm.exg (two stacked cells of a user-defined LSTMCell layer, a for loop over T time
steps, concat, unpacking, a slice): its readouts against an LSTM written here from the parameters
by name, its gradients against central differences of that reference, the python and numpy
backends against each other, training to a small loss, and a longer sequence by rewriting T."""

from __future__ import annotations

import math
import re
import types
from collections.abc import Callable

import numpy as np
import pytest
from conftest import EXAMPLES

import exprgrad
from exprgrad.api import compile_program

PATH = EXAMPLES / "lstm.exg"
SOURCE = PATH.read_text()
PROGRAM = compile_program(SOURCE, "lstm.exg")
SEQS: list[list[list[float]]] = PROGRAM.data["seqs"]
SUMS: list[list[float]] = PROGRAM.data["sums"]
Params = dict  # type: ignore[type-arg]


@pytest.fixture(scope="module")
def mod() -> types.ModuleType:
    return exprgrad.load(PATH)


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _gate(p: Params, cell: str, z: list[float], gate: str,
          act: Callable[[float], float]) -> list[float]:
    w, b = p[f"{cell}.W{gate}"], p[f"{cell}.b{gate}"]
    return [act(sum(wk * zk for wk, zk in zip(row, z)) + bk) for row, bk in zip(w, b)]


def _cell(p: Params, cell: str, x: list[float], h: list[float],
          c: list[float]) -> tuple[list[float], list[float]]:
    z = x + h  # concat(x, h)
    f, i = _gate(p, cell, z, "f", _sigmoid), _gate(p, cell, z, "i", _sigmoid)
    o, g = _gate(p, cell, z, "o", _sigmoid), _gate(p, cell, z, "g", math.tanh)
    c = [fk * ck + ik * gk for fk, ck, ik, gk in zip(f, c, i, g)]
    return [ok * math.tanh(ck) for ok, ck in zip(o, c)], c


def _readouts(p: Params, xs: list[list[float]]) -> list[float]:
    h1 = c1 = h2 = c2 = [0.0] * 3
    out = []
    for x in xs:
        h1, c1 = _cell(p, "cell1", x, h1, c1)
        h2, c2 = _cell(p, "cell2", h1, h2, c2)
        out.append(sum(w * hk for w, hk in zip(p["wout"], h2)) + p["bout"])
    return out


def _loss(p: Params, xs: list[list[float]], sums: list[float]) -> float:
    return sum((r - s) ** 2 for r, s in zip(_readouts(p, xs), sums))


def test_two_cells_with_their_own_parameters(mod: types.ModuleType) -> None:
    by_name = mod.params_by_name(mod.init_params(1))
    gates = [f"W{g}" for g in "fiog"] + [f"b{g}" for g in "fiog"]
    assert list(by_name) == ([f"cell1.{n}" for n in gates] + [f"cell2.{n}" for n in gates]
                             + ["wout", "bout"])
    assert [len(by_name["cell1.Wf"][0]), len(by_name["cell2.Wf"][0])] == [4, 6]  # nin + nh
    assert by_name["cell1.bf"] == by_name["cell2.bf"] == [1.0] * 3
    assert mod.PARAM_COUNT == (4 * 3 * 4 + 12) + (4 * 3 * 6 + 12) + 3 + 1
    # the data: T = 4 steps each, the targets the running sums
    assert all(len(xs) == 4 for xs in SEQS)
    for xs, sums in zip(SEQS, SUMS):
        assert sums == pytest.approx([sum(x[0] for x in xs[:t + 1]) for t in range(4)])


@pytest.mark.parametrize("seed", [1, 4])
def test_the_compiled_lstm_is_the_lstm(mod: types.ModuleType, seed: int) -> None:
    params = mod.init_params(seed)
    by_name = mod.params_by_name(params)
    for xs, sums in zip(SEQS, SUMS):
        got, want = mod.predict(params, xs), _readouts(by_name, xs)
        assert len(got) == 4
        for g, w in zip(got, want):
            assert math.isclose(g, w, rel_tol=1e-12, abs_tol=1e-15)
        assert math.isclose(mod.loss(params, xs, sums), _loss(by_name, xs, sums), rel_tol=1e-12)


def test_the_second_cell_reads_the_first(mod: types.ModuleType) -> None:
    """Zeroing cell2's input weights (its columns for h1) makes every readout independent of the
    sequence; zeroing cell1's input column makes cell1's state, hence the readouts, constant."""
    by_name = mod.params_by_name(mod.init_params(1))
    for gate in "fiog":
        by_name[f"cell2.W{gate}"] = [[0.0] * 3 + row[3:] for row in by_name[f"cell2.W{gate}"]]
    params = mod.params_from_names(by_name)
    first = mod.predict(params, SEQS[0])
    assert any(abs(a - b) > 1e-3 for a, b in zip(first, _readouts(
        mod.params_by_name(mod.init_params(1)), SEQS[0])))
    for xs in SEQS[1:]:
        assert mod.predict(params, xs) == pytest.approx(first, abs=1e-15)


def test_gradients_match_central_differences(mod: types.ModuleType) -> None:
    params = mod.init_params(1)
    xs, sums = SEQS[1], SUMS[1]
    value, grad = mod.loss_grad(params, xs, sums)
    assert math.isclose(value, _loss(mod.params_by_name(params), xs, sums), rel_tol=1e-12)
    h = 1e-6
    for k in range(len(params)):
        up, down = list(params), list(params)
        up[k] += h
        down[k] -= h
        fd = (_loss(mod.params_by_name(up), xs, sums)
              - _loss(mod.params_by_name(down), xs, sums)) / (2 * h)
        assert math.isclose(grad[k], fd, rel_tol=1e-6, abs_tol=1e-9), mod.param_names()[k]
    names = mod.param_names()
    for cell in ("cell1", "cell2"):  # both cells are trained
        assert max(abs(g) for g, n in zip(grad, names) if n.startswith(cell)) > 1e-3
    # the gradient with respect to the inputs and targets, through the vjp
    _, dparams, (dxs, dsums) = mod.loss_vjp(params, xs, sums, 1.0)
    assert np.allclose(dparams, grad, rtol=1e-12, atol=1e-15)
    by_name = mod.params_by_name(params)
    for t in range(4):
        up = [list(r) for r in xs]
        down = [list(r) for r in xs]
        up[t][0] += h
        down[t][0] -= h
        fd = (_loss(by_name, up, sums) - _loss(by_name, down, sums)) / (2 * h)
        assert math.isclose(dxs[t][0], fd, rel_tol=1e-6, abs_tol=1e-9), t
    readouts = _readouts(by_name, xs)
    assert dsums == pytest.approx([-2 * (r - s) for r, s in zip(readouts, sums)], rel=1e-12)


def test_the_python_and_numpy_backends_agree(mod: types.ModuleType) -> None:
    npmod = exprgrad.load(PATH, backend="numpy")
    params = mod.init_params(1)
    values, grad = npmod.loss_grad(params, np.asarray(SEQS), np.asarray(SUMS))
    want_grad = np.zeros(len(params))
    for i, (xs, sums) in enumerate(zip(SEQS, SUMS)):
        v, g = mod.loss_grad(params, xs, sums)
        assert abs(values[i] - v) <= 1e-12 * max(1.0, abs(v))
        want_grad += g
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(npmod.predict(params, np.asarray(SEQS)),
                               [mod.predict(params, xs) for xs in SEQS], rtol=1e-12, atol=1e-14)


def test_the_lstm_learns_the_running_sums() -> None:
    result = exprgrad.train(PROGRAM, progress=False)
    assert result.stopped is None and len(result.losses) == 600
    assert result.losses[-1] < 1e-3 < result.losses[0] / 100
    by_name = exprgrad.load(PATH).params_by_name(result.params)
    for xs, sums in zip(SEQS, SUMS):
        assert max(abs(r - s) for r, s in zip(_readouts(by_name, xs), sums)) < 0.03


def test_rewriting_t_runs_longer_sequences() -> None:
    """T is a file constant: with T = 6 (and six-step data) the same file compiles to a six-step
    LSTM, still equal to the reference."""
    assert len(re.findall(r"^T = 4\b", SOURCE, flags=re.M)) == 1
    seqs = [xs + [[0.1], [-0.2]] for xs in SEQS]
    sums = [s + [s[-1] + 0.1, s[-1] - 0.1] for s in SUMS]
    source = re.sub(r"^T = 4\b", "T = 6", SOURCE, flags=re.M)
    source = re.sub(r"^data seqs = .*$", f"data seqs = {seqs}", source, flags=re.M)
    source = re.sub(r"^data sums = .*$", f"data sums = {sums}", source, flags=re.M)
    six = exprgrad.load_source(source, "lstm6.exg")
    params = six.init_params(1)
    by_name = six.params_by_name(params)
    got = six.predict(params, seqs[2])
    assert len(got) == 6
    assert got == pytest.approx(_readouts(by_name, seqs[2]), rel=1e-12, abs=1e-15)
    # the first four readouts are the four-step LSTM's
    assert got[:4] == pytest.approx(exprgrad.load(PATH).predict(params, SEQS[2]), abs=1e-15)
    result = exprgrad.train(compile_program(source, "lstm6.exg"), progress=False, steps=5)
    assert result.stopped is None and len(result.losses) == 5


def test_one_step_of_the_two_cells_agrees_with_sympy() -> None:
    """`exprgrad check` on the example runs out of its sympy budget at T = 4 (finite differences
    still cover every partial); at T = 1 (the two stacked cells once) sympy compares them."""
    source = re.sub(r"^T = 4\b", "T = 1", SOURCE, flags=re.M)
    source = re.sub(r"^(data|train) .*$", "", source, flags=re.M)
    report = exprgrad.check(compile_program(source, "lstm1.exg"), "loss", budget=120)
    assert not [line for line in report.lines if line.status == "mismatch"]
    sympy = [line for line in report.lines
             if line.method in ("symbolic", "numeric") and line.status == "ok"]
    assert len(sympy) >= 32, report
