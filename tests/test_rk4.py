"""examples/rk4.exg (a for loop of RK4 steps, a def returning two values): the final state
against an RK4 written here, its derivatives with respect to the initial state against the
closed form of RK4 on a linear ODE and central differences, with respect to the stiffness k
against central differences; both backends alike; and k fitted to the file's data."""

from __future__ import annotations

import math

import numpy as np
from conftest import EXAMPLES, run_cli

import exprgrad
from exprgrad.api import program_of

PATH = EXAMPLES / "rk4.exg"
N, H, C = 4, 0.25, 0.5  # the file's constants
STARTS = [[1.0, 0.0], [0.0, 1.0], [-0.5, 2.0], [0.7, -1.3]]


def _rhs(s: list[float], k: float) -> list[float]:
    return [s[1], -k * s[0] - C * s[1]]


def _rk4(s: list[float], k: float) -> list[float]:
    for _ in range(N):
        k1 = _rhs(s, k)
        k2 = _rhs([a + H / 2 * b for a, b in zip(s, k1)], k)
        k3 = _rhs([a + H / 2 * b for a, b in zip(s, k2)], k)
        k4 = _rhs([a + H * b for a, b in zip(s, k3)], k)
        s = [a + H / 6 * (p + 2 * q + 2 * r + t) for a, p, q, r, t in zip(s, k1, k2, k3, k4)]
    return s


def _matmul(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    return [[sum(a[i][m] * b[m][j] for m in range(2)) for j in range(2)] for i in range(2)]


def _rk4_matrix(k: float) -> list[list[float]]:
    """On s' = A s one RK4 step is s -> P(hA) s with P(z) = 1 + z + z^2/2 + z^3/6 + z^4/24, so
    the Jacobian of N steps is P(hA)^N, whatever the initial state."""
    z = [[0.0, H], [-k * H, -C * H]]
    step = [[1.0, 0.0], [0.0, 1.0]]
    power = [[1.0, 0.0], [0.0, 1.0]]
    for m in range(1, 5):
        power = _matmul(power, z)
        step = [[step[i][j] + power[i][j] / math.factorial(m) for j in range(2)]
                for i in range(2)]
    result = [[1.0, 0.0], [0.0, 1.0]]
    for _ in range(N):
        result = _matmul(result, step)
    return result


def test_the_final_state_is_rk4s_and_close_to_the_exact_solution() -> None:
    mod = exprgrad.load(PATH)
    for s0 in STARTS:
        for k in (0.5, 4.0, 9.0):
            x, v = mod.flow(s0, k)
            want = _rk4(s0, k)
            assert math.isclose(x, want[0], rel_tol=1e-13, abs_tol=1e-15)
            assert math.isclose(v, want[1], rel_tol=1e-13, abs_tol=1e-15)
    # x(t) = e^(-Ct/2) (x0 cos wt + (v0 + C x0 / 2) / w sin wt), w = sqrt(k - C^2/4)
    k, t = 4.0, N * H
    w = math.sqrt(k - C * C / 4)
    for x0, v0 in STARTS:
        exact = math.exp(-C * t / 2) * (x0 * math.cos(w * t) + (v0 + C * x0 / 2) / w
                                        * math.sin(w * t))
        assert abs(mod.flow([x0, v0], k)[0] - exact) < 2e-3


def test_derivatives_of_the_final_state() -> None:
    mod = exprgrad.load(PATH)
    for s0, k in ((STARTS[0], 4.0), (STARTS[2], 1.5), (STARTS[3], 7.0)):
        values, grads = mod.flow_grad(s0, k)
        jacobian = _rk4_matrix(k)
        for out in range(2):
            ds0, dk = grads[out]
            assert values[out] == mod.flow(s0, k)[out]
            for i in range(2):
                assert math.isclose(ds0[i], jacobian[out][i], rel_tol=1e-12, abs_tol=1e-14)
                up, down = list(s0), list(s0)
                up[i] += 1e-6
                down[i] -= 1e-6
                fd = (_rk4(up, k)[out] - _rk4(down, k)[out]) / 2e-6
                assert math.isclose(ds0[i], fd, rel_tol=1e-7, abs_tol=1e-9)
            fd = (_rk4(s0, k + 1e-6)[out] - _rk4(s0, k - 1e-6)[out]) / 2e-6
            assert math.isclose(dk, fd, rel_tol=1e-7, abs_tol=1e-9), (s0, k, out)
            # the final state is linear in s0: the Jacobian times s0 is the state itself
            assert math.isclose(values[out], sum(j * s for j, s in zip(jacobian[out], s0)),
                                rel_tol=1e-12, abs_tol=1e-14)


def test_both_backends_agree() -> None:
    scalar = exprgrad.load(PATH)
    batched = exprgrad.load(PATH, backend="numpy")
    starts, ks = np.array(STARTS), np.array([4.0, 1.5, 7.0, 0.3])
    xs, vs = batched.flow(starts, ks)
    ones, zeros = np.ones(len(ks)), np.zeros(len(ks))
    for out, dout in enumerate(((ones, zeros), (zeros, ones))):
        _, (ds0, dk) = batched.flow_vjp(starts, ks, *dout)
        for b, (s0, k) in enumerate(zip(STARTS, ks.tolist())):
            (x, v), grads = scalar.flow_grad(s0, k)
            assert math.isclose(xs[b], x, rel_tol=1e-12) and math.isclose(vs[b], v, rel_tol=1e-12)
            assert np.allclose(ds0[b], grads[out][0], rtol=1e-12, atol=1e-14)
            assert math.isclose(dk[b], grads[out][1], rel_tol=1e-12, abs_tol=1e-14)
    params, ends = np.array([2.5]), np.array([0.1, -0.2, 0.3, 0.0])
    values, grad = batched.loss_grad(params, starts, ends)
    want = [scalar.loss_grad([2.5], s0, e) for s0, e in zip(STARTS, ends.tolist())]
    assert np.allclose(values, [w[0] for w in want], rtol=1e-12, atol=0)
    assert math.isclose(grad[0], math.fsum(w[1][0] for w in want), rel_tol=1e-12)


def test_training_recovers_the_stiffness() -> None:
    """The file's end points are the RK4 flow's with k = 4, rounded to 6 decimals; starting
    from k = 1, training finds k = 4 again."""
    program = program_of(PATH)
    starts, ends = program.data["starts"], program.data["ends"]
    assert all(abs(_rk4(s0, 4.0)[0] - e) <= 5e-7 for s0, e in zip(starts, ends))
    result = exprgrad.train(program, progress=False)
    (k,) = result.params
    assert abs(k - 4.0) < 1e-4
    mse = math.fsum((_rk4(s0, k)[0] - e) ** 2 for s0, e in zip(starts, ends)) / len(ends)
    first = math.fsum((_rk4(s0, 1.0)[0] - e) ** 2 for s0, e in zip(starts, ends)) / len(ends)
    assert math.isclose(result.losses[0], first, rel_tol=1e-12)
    assert mse < 1e-10 < first


def test_the_cli_trains_it() -> None:
    result = run_cli("train", "examples/rk4.exg")
    assert result.returncode == 0, result.stderr
    final = result.stdout.rsplit("final loss:", 1)[1]
    assert float(final) < 1e-10
