"""The numpy backend computes what the scalar backend computes, for a whole batch at once."""

from __future__ import annotations

import math
import random
import re

import numpy as np
import pytest
from conftest import EXAMPLES

import exprgrad
from exprgrad.api import program_of
from exprgrad.emit.arrays import generate_numpy
from exprgrad.emit.load import module_from_code
from exprgrad.lower.lowering import compile_program

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


@pytest.mark.parametrize("optimizer,reduce", [("sgd", "sum"), ("momentum", "mean"),
                                              ("adam", "sum"), ("adam", "mean")])
def test_training_with_the_numpy_backend_matches_the_scalar_backend(optimizer: str,
                                                                    reduce: str) -> None:
    from exprgrad.run.config import config_from_program
    from exprgrad.run.training import train

    program = program_of(EXAMPLES / "seed_mlp.exg")
    config = config_from_program(program)
    config.steps = 30
    config.optimizer, config.reduce = optimizer, reduce
    config.backend = "python"
    a = train(program, config=config)
    config.backend = "numpy"
    b = train(program, config=config)
    assert b.backend == "numpy" and a.backend == "python"
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-9)
    assert all(type(p) is float for p in b.params)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-9, atol=1e-12)


def test_cli_compiles_numpy_modules() -> None:
    from conftest import run_cli

    result = run_cli("compile", "examples/seed_mlp.exg", "--backend", "numpy")
    assert result.returncode == 0, result.stderr
    assert "import numpy as np" in result.stdout and "import math" not in result.stdout
    # one matrix product per layer for dW, written straight into the gradient vector (in
    # loss_grad and again in loss_vjp)
    grad = result.stdout[result.stdout.index("def loss_grad("):]
    grad = grad[:grad.index("\ndef ", 1)] if "\ndef " in grad[1:] else grad
    assert len(re.findall(r"np\.matmul\(\w+\.T, \w+, _g\[", grad)) == 3


# ---- random programs: the numpy backend's buffer reuse against the scalar backend --------------

_UNARY = ["tanh({})", "sin({})", "cos({})", "sigmoid({})", "relu({})", "abs({})",
          "exp(tanh({}))", "({}) / (1 + ({}) * ({}))", "-({})", "({}) ** 2", "softplus({})"]
_BINARY = ["{} + {}", "{} - {}", "{} * {}", "max({}, {})", "min({}, {})"]


def _random_program(seed: int) -> str:
    """A loss over vectors with many shared, reused and dying intermediates."""
    rng = random.Random(seed)
    lines = ["param W[4, 4] = uniform(-1, 1)", "param b[4] = uniform(-1, 1)", "param s = 0.5",
             "def loss(x[4], y[4]):"]
    vectors, scalars = ["x", "y"], ["s"]
    for k in range(rng.randint(6, 14)):
        pick = rng.random()
        v = rng.choice(vectors)
        if pick < 0.3:
            expr = rng.choice(_UNARY).replace("{}", v)
        elif pick < 0.6:
            expr = rng.choice(_BINARY).format(v, rng.choice(vectors))
        elif pick < 0.7:
            expr = f"tanh(W @ {v} + b)" if rng.random() < 0.5 else f"transpose(W) @ {v}"
        elif pick < 0.8:
            expr = f"{rng.choice(scalars)} * {v}"
        elif pick < 0.9:
            expr = f"[{v}[3], {v}[0] * {rng.choice(scalars)}, {v}[1], {v}[2]]"
        else:
            scalar = rng.choice([f"dot({v}, {rng.choice(vectors)})", f"logsumexp({v})",
                                 f"sum({v})", f"{v}[{rng.randrange(4)}]"])
            lines.append(f"    s{k} = {scalar}")
            scalars.append(f"s{k}")
            continue
        lines.append(f"    v{k} = {expr}")
        vectors.append(f"v{k}")
    terms = [f"sum({v})" for v in rng.sample(vectors, min(3, len(vectors)))]
    terms.append(f"logsumexp({rng.choice(vectors)})")
    terms += rng.sample(scalars, min(2, len(scalars))) + ["s * sum(W @ x + b)"]
    lines.append("    return " + " + ".join(terms))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(60))
def test_random_programs_agree_with_the_scalar_backend(seed: int) -> None:
    source = _random_program(seed)
    program = compile_program(source, f"random{seed}.exg")
    scalar = exprgrad.load_source(source, f"random{seed}.exg")
    batched = module_from_code(generate_numpy(program), "np_random", "<np>")
    rng = random.Random(seed)
    xs = [[rng.uniform(-2, 2) for _ in range(4)] for _ in range(7)]
    ys = [[rng.uniform(-2, 2) for _ in range(4)] for _ in range(7)]
    params = scalar.init_params(seed)
    X, Y, P = np.asarray(xs), np.asarray(ys), np.asarray(params)
    copies = (X.copy(), Y.copy(), P.copy())
    values, grad = batched.loss_grad(P, X, Y)
    forward = batched.loss(P, X, Y)
    want_values, want_grad = [], [0.0] * len(params)
    for x, y in zip(xs, ys):
        v, g = scalar.loss_grad(params, x, y)
        want_values.append(v)
        want_grad = [a + b for a, b in zip(want_grad, g)]
    np.testing.assert_allclose(values, want_values, rtol=1e-10, atol=1e-12, err_msg=source)
    np.testing.assert_allclose(forward, want_values, rtol=1e-10, atol=1e-12, err_msg=source)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-9, atol=1e-10, err_msg=source)
    for before, after in zip(copies, (X, Y, P)):  # results are written into temporaries only
        np.testing.assert_array_equal(before, after)


def test_the_softmax_of_a_logsumexp_reuses_its_exponentials() -> None:
    """One exp pass per logsumexp, its gradient a division; right even when v - lse is shared."""
    source = ("net n = MLP(5, [6, 3], out=linear)\n"
              "def loss(x[5], y[3]):\n    z = n(x)\n    ls = z - logsumexp(z)\n"
              "    return -dot(y, ls) + sum(exp(ls)) * 0.5\n")
    program = compile_program(source, "ls.exg")
    code = generate_numpy(program)
    start = code.index("def loss_grad")
    grad_fn = code[start:code.find("\ndef ", start + 1)]
    assert grad_fn.count("np.exp(") == 1 and grad_fn.count(".max(") == 1
    scalar = exprgrad.load_source(source, "ls.exg")
    batched = module_from_code(code, "np_ls", "<np>")
    rng = random.Random(5)
    xs = [[rng.uniform(-3, 3) for _ in range(5)] for _ in range(6)]
    ys = [[1.0 if k == i % 3 else 0.0 for k in range(3)] for i in range(6)]
    params = scalar.init_params(1)
    values, grad = batched.loss_grad(params, np.asarray(xs), np.asarray(ys))
    want = [scalar.loss_grad(params, x, y) for x, y in zip(xs, ys)]
    np.testing.assert_allclose(values, [v for v, _ in want], rtol=1e-12)
    np.testing.assert_allclose(grad, np.sum([g for _, g in want], axis=0), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.exg")), ids=lambda p: p.name)
def test_every_example_function_agrees_with_the_scalar_backend(path) -> None:  # type: ignore[no-untyped-def]
    """Every function of every example (custom rules, several outputs, no parameters)."""
    program = program_of(path)
    scalar = exprgrad.load(path)
    batched = module_from_code(generate_numpy(program), "np_example", "<np>")
    rng = random.Random(path.name)
    params = scalar.init_params(2) if program.params else None
    for name, fn in program.functions.items():
        examples = [[_shape_value(rng, s) for s in fn.arg_shapes] for _ in range(5)]
        if not examples[0]:
            continue  # no arguments: nothing to batch
        cols = [np.asarray([e[i] for e in examples]) for i in range(len(fn.arg_shapes))]
        lead = [params] if fn.uses_params else []
        values = getattr(batched, name)(*lead, *cols)
        want = [getattr(scalar, name)(*lead, *e) for e in examples]
        if len(fn.outputs) == 1:
            np.testing.assert_allclose(values, want, rtol=1e-12, atol=1e-14)
        else:
            for k in range(len(fn.outputs)):
                np.testing.assert_allclose(values[k], [w[k] for w in want], rtol=1e-12)
        if not hasattr(batched, name + "_grad"):
            continue
        got_v, got_g = getattr(batched, name + "_grad")(*lead, *cols)
        per = [getattr(scalar, name + "_grad")(*lead, *e) for e in examples]
        np.testing.assert_allclose(got_v, [v for v, _ in per], rtol=1e-12, atol=1e-14)
        assert np.shape(got_v) == (5, *fn.outputs[0].shape)
        if fn.uses_params:
            np.testing.assert_allclose(got_g, np.sum([g for _, g in per], axis=0),
                                       rtol=1e-9, atol=1e-12)
        else:
            for k, shape in enumerate(fn.arg_shapes):
                assert np.shape(got_g[k]) == (5, *shape)
                np.testing.assert_allclose(got_g[k], [g[k] for _, g in per], rtol=1e-10,
                                           atol=1e-12)


def test_values_and_gradients_keep_the_batch_axis_where_they_are_constant() -> None:
    source = "def f(x, y[2]):\n    return 2 * x + 3\n\ndef c(x):\n    return 5.0\n"
    batched = module_from_code(generate_numpy(compile_program(source, "c.exg")), "np_c", "<np>")
    x, y = np.arange(3.0), np.ones((3, 2))
    values, (dx, dy) = batched.f_grad(x, y)
    np.testing.assert_array_equal(values, [3.0, 5.0, 7.0])
    np.testing.assert_array_equal(dx, [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(dy, np.zeros((3, 2)))
    np.testing.assert_array_equal(batched.c(x), [5.0, 5.0, 5.0])
    values, (dx,) = batched.c_grad(x)
    assert values.shape == (3,) and dx.shape == (3,) and not dx.any()
