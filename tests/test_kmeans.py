"""examples/kmeans.exg (min over a vector built by a for loop and concat): the k-means cost
against a formula written here, its gradient against central differences away from ties and at
a tie (the earlier centroid takes it), both backends alike, and training to a fixed point of
Lloyd's algorithm."""

from __future__ import annotations

import math
import random

import numpy as np
from conftest import EXAMPLES, run_cli

import exprgrad
from exprgrad.api import program_of

PATH = EXAMPLES / "kmeans.exg"


def _dists(flat: list[float], p: list[float]) -> list[float]:
    return [(p[0] - flat[2 * j]) ** 2 + (p[1] - flat[2 * j + 1]) ** 2 for j in range(3)]


def _cost(flat: list[float], p: list[float]) -> float:
    return min(_dists(flat, p))


def _total(flat: list[float], pts: list[list[float]]) -> float:
    return math.fsum(_cost(flat, p) for p in pts)


def _margin(flat: list[float], p: list[float]) -> float:
    """How far the nearest centroid is from a tie: second smallest minus smallest distance."""
    d = sorted(_dists(flat, p))
    return d[1] - d[0]


def _centroids(seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(-0.5, 3.5) for _ in range(6)]


def test_the_cost_is_the_distance_to_the_nearest_centroid() -> None:
    mod = exprgrad.load(PATH)
    pts = program_of(PATH).data["pts"]
    for flat in (mod.init_params(0), _centroids(1), _centroids(2)):
        for p in pts:
            assert math.isclose(mod.cost(flat, p), _cost(flat, p), rel_tol=1e-14)
    checked = 0
    for seed in range(3, 8):
        flat = _centroids(seed)
        for p in pts:
            if _margin(flat, p) < 1e-3:  # central differences would straddle a tie
                continue
            value, grad = mod.cost_grad(flat, p)
            assert math.isclose(value, _cost(flat, p), rel_tol=1e-14)
            for k in range(6):
                up, down = list(flat), list(flat)
                up[k] += 1e-6
                down[k] -= 1e-6
                fd = (_cost(up, p) - _cost(down, p)) / 2e-6
                assert math.isclose(grad[k], fd, rel_tol=1e-7, abs_tol=1e-9), (seed, p, k)
            checked += 1
    assert checked >= 60


def test_at_a_tie_the_earlier_centroid_takes_the_gradient() -> None:
    mod = exprgrad.load(PATH)
    flat = [0.0, 0.0, 2.0, 0.0, 9.0, 9.0]  # (1, 5) is as far from centroid 0 as from 1
    value, grad = mod.cost_grad(flat, [1.0, 5.0])
    assert value == 26.0
    assert list(grad) == [-2.0, -10.0, 0.0, 0.0, 0.0, 0.0]


def test_both_backends_agree() -> None:
    scalar = exprgrad.load(PATH)
    batched = exprgrad.load(PATH, backend="numpy")
    pts = program_of(PATH).data["pts"]
    for flat in (scalar.init_params(0), _centroids(9)):
        values, grad = batched.cost_grad(np.array(flat), np.array(pts))
        grads = [scalar.cost_grad(flat, p)[1] for p in pts]
        for p, v in zip(pts, values):
            assert math.isclose(v, scalar.cost(flat, p), rel_tol=1e-12)
        for k in range(6):
            assert math.isclose(grad[k], math.fsum(g[k] for g in grads), rel_tol=1e-12,
                                abs_tol=1e-12)


def test_training_ends_at_a_fixed_point_of_lloyds_algorithm() -> None:
    """Gradient descent lowers the cost; at the end every centroid is the mean of the points
    nearest to it (Lloyd's update, computed here, changes nothing), one centroid per cluster."""
    program = program_of(PATH)
    pts = program.data["pts"]
    start = exprgrad.load(PATH).init_params(0)
    result = exprgrad.train(program, progress=False)
    flat = list(result.params)
    assert math.isclose(result.losses[0], _total(start, pts), rel_tol=1e-12)
    assert _total(flat, pts) < _total(start, pts) / 4
    owners: list[list[list[float]]] = [[], [], []]
    for p in pts:
        d = _dists(flat, p)
        owners[d.index(min(d))].append(p)
        assert _margin(flat, p) > 0.5
    assert sorted(len(o) for o in owners) == [5, 5, 5]
    for j, owned in enumerate(owners):
        for axis in range(2):
            mean = math.fsum(p[axis] for p in owned) / len(owned)
            assert math.isclose(flat[2 * j + axis], mean, rel_tol=1e-9, abs_tol=1e-12)


def test_the_cli_trains_it() -> None:
    result = run_cli("train", "examples/kmeans.exg")
    assert result.returncode == 0, result.stderr
    final = float(result.stdout.rsplit("final loss:", 1)[1])
    # the cost of the three clusters the points were drawn around, each at its own mean
    pts = program_of(PATH).data["pts"]
    centres = [0.0, 0.0, 3.0, 0.0, 1.5, 2.5]
    clusters: list[list[list[float]]] = [[], [], []]
    for p in pts:
        d = _dists(centres, p)
        clusters[d.index(min(d))].append(p)
    within = math.fsum((p[a] - math.fsum(q[a] for q in c) / len(c)) ** 2
                       for c in clusters for p in c for a in range(2))
    assert math.isclose(final, within, rel_tol=1e-5)  # printed to 6 digits
