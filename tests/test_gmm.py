"""examples/gmm.exg (logsumexp over components, softmax weights, pi): its negative
log-likelihood against the mixture density written here with the math module, its gradient
against central differences of that formula, both backends alike, and training to a maximum of
the likelihood (a fixed point of EM, whose update is written here too)."""

from __future__ import annotations

import math
import random

import numpy as np
from conftest import EXAMPLES, run_cli

import exprgrad
from exprgrad.api import program_of

PATH = EXAMPLES / "gmm.exg"


def _nll(params: list[float], x: float) -> float:
    """-log sum_j w_j N(x; mu_j, sigma_j), the density written out (no logsumexp)."""
    mu, logsig, logits = params[0:3], params[3:6], params[6:9]
    total = sum(math.exp(a) for a in logits)
    density = sum(math.exp(a) / total * math.exp(-0.5 * ((x - m) / math.exp(s)) ** 2)
                  / (math.exp(s) * math.sqrt(2 * math.pi)) for m, s, a in zip(mu, logsig, logits))
    return -math.log(density)


def _mean_nll(params: list[float], xs: list[float]) -> float:
    return math.fsum(_nll(params, x) for x in xs) / len(xs)


def _em_update(params: list[float], xs: list[float]) -> list[float]:
    """One EM step (responsibilities, then weighted means, deviations and weights), returned in
    the file's parametrisation (mu, log sigma, logits normalised so logsumexp(logits) = 0)."""
    mu, sig = params[0:3], [math.exp(s) for s in params[3:6]]
    total = sum(math.exp(a) for a in params[6:9])
    w = [math.exp(a) / total for a in params[6:9]]
    resp = []
    for x in xs:
        d = [w[j] * math.exp(-0.5 * ((x - mu[j]) / sig[j]) ** 2) / sig[j] for j in range(3)]
        resp.append([v / sum(d) for v in d])
    n = [sum(r[j] for r in resp) for j in range(3)]
    mu2 = [sum(r[j] * x for r, x in zip(resp, xs)) / n[j] for j in range(3)]
    sig2 = [math.sqrt(sum(r[j] * (x - mu2[j]) ** 2 for r, x in zip(resp, xs)) / n[j])
            for j in range(3)]
    return mu2 + [math.log(s) for s in sig2] + [math.log(v / len(xs)) for v in n]


def _point(seed: int) -> list[float]:
    """Parameters away from the initial ones (distinct means, deviations and weights)."""
    rng = random.Random(seed)
    return ([rng.uniform(-3, 3) for _ in range(3)] + [rng.uniform(-0.7, 0.5) for _ in range(3)]
            + [rng.uniform(-1, 1) for _ in range(3)])


def test_the_nll_is_the_mixture_density_and_its_gradient_the_derivative() -> None:
    mod = exprgrad.load(PATH)
    xs = program_of(PATH).data["xs"]
    for params in (mod.init_params(0), _point(1), _point(2)):
        for x in xs:
            assert math.isclose(mod.nll(params, x), _nll(params, x), rel_tol=1e-12)
        total = sum(math.exp(a) for a in params[6:9])
        assert all(math.isclose(w, math.exp(a) / total, rel_tol=1e-14)
                   for w, a in zip(mod.weights(params), params[6:9]))
    params = _point(3)
    for x in (xs[0], xs[4], xs[9], 6.0):  # 6.0: far out in one tail
        value, grad = mod.nll_grad(params, x)
        assert math.isclose(value, _nll(params, x), rel_tol=1e-12)
        for k in range(9):
            up, down = list(params), list(params)
            up[k] += 1e-6
            down[k] -= 1e-6
            fd = (_nll(up, x) - _nll(down, x)) / 2e-6
            assert math.isclose(grad[k], fd, rel_tol=1e-6, abs_tol=1e-8), (x, k)


def test_both_backends_agree() -> None:
    scalar = exprgrad.load(PATH)
    batched = exprgrad.load(PATH, backend="numpy")
    xs = program_of(PATH).data["xs"] + [6.0, -8.0]
    params = _point(4)
    values, grad = batched.nll_grad(np.array(params), np.array(xs))
    grads = [scalar.nll_grad(params, x)[1] for x in xs]
    for x, v in zip(xs, values):
        assert math.isclose(v, scalar.nll(params, x), rel_tol=1e-12)
    for k in range(9):
        want = math.fsum(g[k] for g in grads)
        assert math.isclose(grad[k], want, rel_tol=1e-12, abs_tol=1e-12), k
    assert np.allclose(batched.weights(np.array(params)), scalar.weights(params),
                       rtol=1e-12, atol=0)


def test_training_finds_a_maximum_likelihood_mixture() -> None:
    """The 24 points were drawn from three clusters (8 near -3, 10 near 0, 6 near 2.5). Training
    lowers the mean NLL (computed here) and ends at a fixed point of EM: one EM step moves no
    parameter by more than 1e-5."""
    program = program_of(PATH)
    xs = program.data["xs"]
    result = exprgrad.train(program, progress=False)
    start = exprgrad.load(PATH).init_params(0)  # the train statement's seed, the default
    trained = list(result.params)
    assert math.isclose(result.losses[0], _mean_nll(start, xs), rel_tol=1e-12)
    assert _mean_nll(trained, xs) < _mean_nll(start, xs) - 0.5
    assert math.isclose(result.final_loss, _mean_nll(trained, xs), rel_tol=1e-9)
    mu = trained[0:3]
    assert all(abs(m - c) < 0.5 for m, c in zip(sorted(mu), (-3.0, 0.0, 2.5)))
    shift = trained[6:9]
    lse = math.log(sum(math.exp(a) for a in shift))
    normalised = trained[0:6] + [a - lse for a in shift]
    moved = [abs(a - b) for a, b in zip(_em_update(trained, xs), normalised)]
    assert max(moved) < 1e-5, moved


def test_the_cli_trains_it() -> None:
    result = run_cli("train", "examples/gmm.exg")
    assert result.returncode == 0, result.stderr
    assert "final loss: 1.7072" in result.stdout
