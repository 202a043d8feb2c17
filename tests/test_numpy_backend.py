"""The numpy backend computes what the scalar backend computes, for a whole batch at once."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from conftest import EXAMPLES

import exprgrad
from exprgrad.api import module_from_code, program_of
from exprgrad.lower import compile_program
from exprgrad.npgen import generate_numpy

PROGRAMS = {
    "seed": (EXAMPLES / "seed_mlp.exg").read_text(),
    "relu_linear": "net n = MLP(5, [7, 3], act=relu, out=linear)\n"
                   "def loss(x[5], y[3]):\n    return sum((n(x) - y) ** 2)\n",
    "softmax_ce": "net n = MLP(6, [8, 4], out=linear)\n"
                  "def loss(x[6], y[4]):\n    z = n(x)\n    m = z[0]\n"
                  "    lse = log(sum(exp(z - m))) + m\n    return lse - dot(y, z)\n",
    "logsumexp": "net n = MLP(5, [6, 3], out=linear)\n"
                 "def loss(x[5], y[3]):\n    z = n(x)\n    return logsumexp(z) - dot(y, z)\n",
    "params_mix": "param w[3, 2] = uniform(-1, 1)\nparam b[3] = [0.1, 0.2, 0.3]\n"
                  "param s = 0.7\ndef loss(x[2], y):\n    h = sigmoid(w @ x + b) * s\n"
                  "    v = [h[0], h[1] * h[2], x[0]]\n    return (sum(v) - y) ** 2 + abs(s)\n",
}


def _shape_value(rng: random.Random, shape: tuple[int, ...]):  # type: ignore[no-untyped-def]
    if shape == ():
        return rng.uniform(-1.5, 1.5)
    return [_shape_value(rng, shape[1:]) for _ in range(shape[0])]


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_batched_loss_and_summed_gradient_match_scalar_code(name: str) -> None:
    program = compile_program(PROGRAMS[name], f"{name}.exg")
    scalar = exprgrad.load_source(PROGRAMS[name], f"{name}.exg")
    batched = module_from_code(generate_numpy(program), "np_mod", "<np>")
    fn = program.functions["loss"]
    rng = random.Random(name)
    examples = [[_shape_value(rng, s) for s in fn.arg_shapes] for _ in range(9)]
    params = scalar.init_params(3)
    values, grad = batched.loss_grad(params, *[np.asarray([e[i] for e in examples])
                                               for i in range(len(fn.arg_shapes))])
    want_values = []
    want_grad = [0.0] * len(params)
    for ex in examples:
        v, g = scalar.loss_grad(params, *ex)
        want_values.append(v)
        want_grad = [a + b for a, b in zip(want_grad, g)]
    assert values.shape == (9,)
    np.testing.assert_allclose(values, want_values, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-12)


def test_functions_without_parameters_give_per_example_gradients() -> None:
    program = program_of(EXAMPLES / "tour.exg")
    batched = module_from_code(generate_numpy(program), "np_tour", "<np>")
    scalar = exprgrad.load(EXAMPLES / "tour.exg")
    xs = np.array([0.3, -1.2, 2.0])
    ys = np.array([1.0, 0.5, -0.7])
    values, (dx, dy) = batched.h_grad(xs, ys)
    for i in range(3):
        v, (gx, gy) = scalar.h_grad(float(xs[i]), float(ys[i]))
        assert math.isclose(values[i], v, rel_tol=1e-12)
        assert math.isclose(dx[i], gx, rel_tol=1e-10) and math.isclose(dy[i], gy, rel_tol=1e-10)


def test_training_with_the_numpy_backend_matches_the_scalar_backend() -> None:
    from exprgrad.training import config_from_program, train

    program = program_of(EXAMPLES / "seed_mlp.exg")
    config = config_from_program(program)
    config.steps = 30
    config.backend = "python"
    a = train(program, config=config)
    config.backend = "numpy"
    b = train(program, config=config)
    assert b.backend == "numpy" and a.backend == "python"
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-9)


def test_cli_compiles_numpy_modules() -> None:
    from conftest import run_cli

    result = run_cli("compile", "examples/seed_mlp.exg", "--backend", "numpy")
    assert result.returncode == 0, result.stderr
    assert "import numpy as np" in result.stdout and "import math" not in result.stdout
    assert result.stdout.count(".T @ ") == 3  # one matrix product per layer for dW
