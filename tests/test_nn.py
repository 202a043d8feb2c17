"""Networks: the seed's MLP compiled from text, against sympy, central differences and the
seed's own engine (corrected tanh) on the same weights."""

from __future__ import annotations

import math
import random
import sys

import pytest
import sympy as sp
from conftest import EXAMPLES, ROOT

import exprgrad
from exprgrad.api import program_of
from exprgrad.ir.graph import check_program

sys.path.insert(0, str(ROOT / "benchmarks"))
import seed_engine  # noqa: E402

XS = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
YS = [1.0, -1.0, -1.0, 1.0]


@pytest.fixture(scope="module")
def seed_mlp():  # type: ignore[no-untyped-def]
    return exprgrad.load(EXAMPLES / "seed_mlp.exg")


def test_parameters_match_the_seed_layout(seed_mlp) -> None:  # type: ignore[no-untyped-def]
    names = seed_mlp.PARAM_NAMES
    assert len(names) == 41 == len(seed_engine.MLP(3, [4, 4, 1]).parameters())
    assert names[:4] == ("n.layers.0.neurons.0.w.0", "n.layers.0.neurons.0.w.1",
                         "n.layers.0.neurons.0.w.2", "n.layers.0.neurons.0.b")
    assert names[-1] == "n.layers.2.neurons.0.b"
    # init_params(seed) draws exactly what the seed's classes draw after random.seed(seed)
    random.seed(7)
    reference = [p.data for p in seed_engine.MLP(3, [4, 4, 1]).parameters()]
    assert seed_mlp.init_params(7) == reference
    assert seed_mlp.init_params(7) == seed_mlp.init_params(7) != seed_mlp.init_params(8)


def test_loss_and_gradient_match_the_seed_engine(seed_mlp) -> None:  # type: ignore[no-untyped-def]
    params = seed_mlp.init_params(3)
    net = seed_engine.MLP(3, [4, 4, 1])
    net.set_parameters(params)
    for x, y in zip(XS, YS):
        for p in net.parameters():
            p.grad = 0.0
        loss = (net(x) - y) ** 2
        loss.backward()
        value, grads = seed_mlp.loss_grad(params, x, y)
        assert math.isclose(value, loss.data, rel_tol=1e-12, abs_tol=1e-15)
        for g, p in zip(grads, net.parameters()):
            assert math.isclose(g, p.grad, rel_tol=1e-9, abs_tol=1e-12)


def test_gradient_matches_sympy_and_central_differences(seed_mlp) -> None:  # type: ignore[no-untyped-def]
    """sympy builds the same network by hand from symbols; its diff is the reference."""
    params = seed_mlp.init_params(1)
    ws = sp.symbols("p0:41", real=True)
    x = [sp.Float(v) for v in XS[1]]
    y = sp.Float(YS[1])
    k = 0
    layer_in = x
    for nin, nout in ((3, 4), (4, 4), (4, 1)):
        outs = []
        for _ in range(nout):
            act = sum((ws[k + j] * layer_in[j] for j in range(nin)), sp.Integer(0)) + ws[k + nin]
            outs.append(sp.tanh(act))
            k += nin + 1
        layer_in = outs
    loss = (layer_in[0] - y) ** 2
    subs = {w: sp.Float(v, 30) for w, v in zip(ws, params)}
    value, grads = seed_mlp.loss_grad(params, XS[1], YS[1])
    assert math.isclose(value, float(loss.subs(subs)), rel_tol=1e-12)
    for i in range(0, 41, 4):
        ref = float(sp.diff(loss, ws[i]).subs(subs))
        assert math.isclose(grads[i], ref, rel_tol=1e-9, abs_tol=1e-14), i
    rng = random.Random(0)
    direction = [rng.uniform(-1, 1) for _ in params]
    h = 1e-6
    plus = seed_mlp.loss([p + h * d for p, d in zip(params, direction)], XS[1], YS[1])
    minus = seed_mlp.loss([p - h * d for p, d in zip(params, direction)], XS[1], YS[1])
    assert math.isclose((plus - minus) / (2 * h), sum(g * d for g, d in zip(grads, direction)),
                        rel_tol=1e-6, abs_tol=1e-9)


def test_vector_ops_stay_single_nodes() -> None:
    """A network is a few tensor nodes, not one node per weight; the IR stays valid."""
    program = program_of(EXAMPLES / "seed_mlp.exg")
    fn = program.functions["loss"]
    check_program(fn.outputs)
    assert len(program.graph.nodes) < 40


def test_network_options_and_kinds() -> None:
    mod = exprgrad.load_source(
        "net a = MLP(2, [3, 2], act=relu, out=linear)\n"
        "net b = Layer(2, 3, act=sigmoid)\n"
        "net c = Neuron(2)\n"
        "def f(x[2]):\n    return sum(a(x)) + sum(b(x)) + c(x)\n")
    assert mod.PARAM_NAMES[0] == "a.layers.0.neurons.0.w.0"
    assert "b.neurons.2.b" in mod.PARAM_NAMES and "c.w.1" in mod.PARAM_NAMES
    params = mod.init_params(0)
    x = [0.3, -0.7]
    # an independent evaluation of the three networks in plain Python
    p = iter(params)
    def dense(xv, nin, nout, act):  # type: ignore[no-untyped-def]
        out = []
        for _ in range(nout):
            w = [next(p) for _ in range(nin)]
            b = next(p)
            out.append(act(sum(wi * xi for wi, xi in zip(w, xv)) + b))
        return out
    relu = lambda v: max(v, 0.0)  # noqa: E731
    lin = lambda v: v  # noqa: E731
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    total = sum(dense(dense(x, 2, 3, relu), 3, 2, lin))
    total += sum(dense(x, 2, 3, sig))
    total += dense(x, 2, 1, math.tanh)[0]
    assert math.isclose(mod.f(params, x), total, rel_tol=1e-12)


def test_param_declarations() -> None:
    mod = exprgrad.load_source(
        "param w = 0.5\nparam v[3] = [1, 2, 3]\nparam m[2, 2] = uniform(-0.1, 0.1)\n"
        "def f(x[2]):\n    return w * sum(v) + sum(m @ x)\n")
    params = mod.init_params(0)
    assert mod.PARAM_NAMES == ("w", "v.0", "v.1", "v.2", "m.0.0", "m.0.1", "m.1.0", "m.1.1")
    assert params[:4] == [0.5, 1.0, 2.0, 3.0]
    assert all(-0.1 <= v <= 0.1 for v in params[4:])
    value, grads = mod.f_grad(params, [1.0, 2.0])
    assert grads[:4] == [6.0, 0.5, 0.5, 0.5]
    assert grads[4:] == [1.0, 2.0, 1.0, 2.0]


BATCH_PROGRAMS = {
    "seed": (EXAMPLES / "seed_mlp.exg").read_text(),
    # a constant-per-example gradient (d/ds = 1), a scalar argument and a matrix argument
    "mixed": "param w[2] = [0.3, -0.7]\nparam s = 0.2\n"
             "def loss(m[2, 2], t):\n    v = tanh(m @ w) * t\n    return dot(v, v) + s + s * t\n",
}


@pytest.mark.parametrize("name", sorted(BATCH_PROGRAMS))
def test_grad_sum_is_the_batch_sum_of_the_gradient(name: str) -> None:
    """f_grad_sum (one loop in generated code) = the sum of f_grad over the examples, and its
    gradient matches central differences of the summed loss."""
    mod = exprgrad.load_source(BATCH_PROGRAMS[name], f"{name}.exg")
    rng = random.Random(name)
    if name == "seed":
        cols = [[[rng.uniform(-2, 2) for _ in range(3)] for _ in range(6)],
                [rng.choice([-1.0, 1.0]) for _ in range(6)]]
    else:
        cols = [[[[rng.uniform(-2, 2) for _ in range(2)] for _ in range(2)] for _ in range(6)],
                [rng.uniform(-1, 1) for _ in range(6)]]
    params = mod.init_params(4)
    total, grads = mod.loss_grad_sum(params, *cols)
    want_total, want = 0.0, [0.0] * len(params)
    for example in zip(*cols):
        v, g = mod.loss_grad(params, *example)
        want_total += v
        want = [a + b for a, b in zip(want, g)]
    assert math.isclose(total, want_total, rel_tol=1e-13)
    assert all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-14) for a, b in zip(grads, want))
    for i in range(len(params)):
        h = 1e-6
        up, down = list(params), list(params)
        up[i] += h
        down[i] -= h
        fd = (sum(mod.loss(up, *ex) for ex in zip(*cols))
              - sum(mod.loss(down, *ex) for ex in zip(*cols))) / (2 * h)
        assert math.isclose(grads[i], fd, rel_tol=1e-6, abs_tol=1e-7), (i, grads[i], fd)
    if name == "mixed":
        assert math.isclose(grads[-1], 6 + sum(cols[1]), rel_tol=1e-12)  # d/ds of s + s*t
