"""examples/lstm.exg (a for loop over time steps, concat, unpacking, slices): its prediction
against an LSTM written here from the parameters by name, its gradient against central
differences, and training to a small loss."""

from __future__ import annotations

import math

from conftest import EXAMPLES

import exprgrad
from exprgrad.api import compile_program


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _gate(p: dict[str, list], z: list[float], w: str, b: str, act) -> list[float]:  # type: ignore[type-arg, no-untyped-def]
    return [act(sum(wi * zi for wi, zi in zip(p[w][k], z)) + p[b][k]) for k in range(3)]


def _predict(p: dict[str, list], xs: list[list[float]]) -> float:  # type: ignore[type-arg]
    h, c = [0.0] * 3, [0.0] * 3
    for x in xs:
        z = x + h  # concat(x, h)
        f, i = _gate(p, z, "Wf", "bf", _sigmoid), _gate(p, z, "Wi", "bi", _sigmoid)
        o, g = _gate(p, z, "Wo", "bo", _sigmoid), _gate(p, z, "Wg", "bg", math.tanh)
        c = [fk * ck + ik * gk for fk, ck, ik, gk in zip(f, c, i, g)]
        h = [ok * math.tanh(ck) for ok, ck in zip(o, c)]
    return sum(w * hk for w, hk in zip(p["wout"], h))


def test_the_compiled_lstm_is_the_lstm() -> None:
    mod = exprgrad.load(EXAMPLES / "lstm.exg")
    program = compile_program((EXAMPLES / "lstm.exg").read_text(), "lstm.exg")
    params = mod.init_params(1)
    by_name = mod.params_by_name(params)
    for xs in program.data["seqs"]:
        assert math.isclose(mod.predict(params, xs), _predict(by_name, xs), rel_tol=1e-12)
    xs, y = program.data["seqs"][1], program.data["sums"][1]
    _, grad = mod.loss_grad(params, xs, y)
    for k in range(0, len(params), 5):
        up, down = list(params), list(params)
        up[k] += 1e-6
        down[k] -= 1e-6
        fd = ((_predict(mod.params_by_name(up), xs) - y) ** 2
              - (_predict(mod.params_by_name(down), xs) - y) ** 2) / 2e-6
        assert math.isclose(grad[k], fd, rel_tol=1e-5, abs_tol=1e-9), k


def test_the_lstm_learns_to_sum_its_sequence() -> None:
    program = compile_program((EXAMPLES / "lstm.exg").read_text(), "lstm.exg")
    result = exprgrad.train(program, progress=False)
    assert result.stopped is None and result.losses[-1] < 1e-3 < result.losses[0] / 10
