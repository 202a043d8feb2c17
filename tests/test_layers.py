"""User-defined layer types (``layer Dense(nin, nout):``), networks made of them, and constants
in shapes: values against forwards written here from the parameters by name, gradients against
central differences, both backends, sympy's check, renaming, the REPL, and located errors."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT, run_cli

import exprgrad
from exprgrad.api import compile_program, load_source

SOURCE = """N = 3
H = 2 * N - 2

layer Dense(nin, nout):
    param W[nout, nin] = uniform(-0.5, 0.5)
    param b[nout] = 0.25
    def forward(x[nin]):
        return tanh(W @ x + b)

layer Residual(n):
    net inner = Dense(n, n)
    param scale = 0.5
    def forward(x[n]):
        return x + scale * inner(x)

net d = Dense(N, H)
net r1 = Residual(H)
net r2 = Residual(n=H)
param wout[H] = uniform(-1, 1)

def f(x[N]):
    return dot(wout, r2(r1(d(x))))

def loss(x[N], y):
    return (f(x) - y) ** 2
"""


def _dense(p: dict, name: str, x: list[float]) -> list[float]:  # type: ignore[type-arg]
    return [math.tanh(sum(w * v for w, v in zip(row, x)) + b)
            for row, b in zip(p[f"{name}.W"], p[f"{name}.b"])]


def _residual(p: dict, name: str, x: list[float]) -> list[float]:  # type: ignore[type-arg]
    inner = _dense(p, f"{name}.inner", x)
    return [v + p[f"{name}.scale"] * u for v, u in zip(x, inner)]


def _f(p: dict, x: list[float]) -> float:  # type: ignore[type-arg]
    h = _residual(p, "r2", _residual(p, "r1", _dense(p, "d", x)))
    return sum(w * v for w, v in zip(p["wout"], h))


def _random_params(mod, seed: int) -> list[float]:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    return [rng.uniform(-1, 1) for _ in range(mod.PARAM_COUNT)]


def test_each_network_owns_its_parameters_named_under_it() -> None:
    mod = load_source(SOURCE, "layers.exg")
    names = mod.param_names()
    # d: W [4, 3], b [4]; r1, r2: inner.W [4, 4], inner.b [4], scale; wout [4]
    assert len(names) == 12 + 4 + 2 * (16 + 4 + 1) + 4 == mod.PARAM_COUNT
    for name in ("d.W.3.2", "d.b.0", "r1.inner.W.0.3", "r2.inner.b.3", "r1.scale", "r2.scale",
                 "wout.3"):
        assert name in names
    by_name = mod.params_by_name(mod.init_params(0))
    assert by_name["r1.inner.W"] != by_name["r2.inner.W"]  # drawn separately
    assert by_name["d.b"] == [0.25] * 4 and by_name["r1.scale"] == 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_values_and_gradients_are_the_layers_written_out(seed: int) -> None:
    mod = load_source(SOURCE, "layers.exg")
    params = _random_params(mod, seed)
    p = mod.params_by_name(params)
    x, y = [0.3, -1.2, 0.7], 0.4
    assert math.isclose(mod.f(params, x), _f(p, x), rel_tol=1e-12)
    value, grad = mod.loss_grad(params, x, y)
    assert math.isclose(value, (_f(p, x) - y) ** 2, rel_tol=1e-12)
    for k in range(len(params)):
        up, down = list(params), list(params)
        up[k] += 1e-6
        down[k] -= 1e-6
        fd = ((_f(mod.params_by_name(up), x) - y) ** 2
              - (_f(mod.params_by_name(down), x) - y) ** 2) / 2e-6
        assert math.isclose(grad[k], fd, rel_tol=1e-5, abs_tol=1e-8), names_k(mod, k)


def names_k(mod, k: int) -> str:  # type: ignore[no-untyped-def]
    return str(mod.param_names()[k])


def test_a_loss_of_one_network_has_no_gradient_for_another() -> None:
    text = SOURCE + "\ndef only_r1(x[H]):\n    return sum(r1(x))\n"
    mod = load_source(text, "layers.exg")
    params = _random_params(mod, 3)
    _, grad = mod.only_r1_grad(params, [0.1, 0.2, 0.3, 0.4])
    for name, g in zip(mod.param_names(), grad):
        assert (g != 0.0) == name.startswith("r1."), name


def test_both_backends_agree() -> None:
    scalar = load_source(SOURCE, "layers.exg")
    batched = load_source(SOURCE, "layers.exg", backend="numpy")
    params = _random_params(scalar, 4)
    xs = [[0.3, -1.2, 0.7], [1.0, 0.0, -0.5], [0.0, 0.0, 0.0]]
    ys = [0.4, -0.2, 1.0]
    values, summed = batched.loss_grad(np.array(params), np.array(xs), np.array(ys))
    total = np.zeros(len(params))
    for i, (x, y) in enumerate(zip(xs, ys)):
        value, grad = scalar.loss_grad(params, x, y)
        assert math.isclose(values[i], value, rel_tol=1e-12)
        total += grad
    assert np.allclose(summed, total, rtol=1e-12, atol=1e-15)


def test_check_agrees_with_sympy() -> None:
    small = SOURCE.replace("N = 3", "N = 2").replace("H = 2 * N - 2", "H = 2")
    assert exprgrad.check(compile_program(small, "layers.exg")).ok


def test_renaming_layers_arguments_and_networks_changes_nothing() -> None:
    renamed = (SOURCE.replace("Dense", "Affine").replace("Residual", "Skip")
               .replace("nin", "a_in").replace("nout", "a_out").replace("inner", "branch")
               .replace("scale", "alpha").replace("r1", "first").replace("r2", "second"))
    one, two = load_source(SOURCE, "a.exg"), load_source(renamed, "b.exg")
    assert one.PARAM_COUNT == two.PARAM_COUNT
    params = _random_params(one, 5)
    x = [0.5, 0.25, -0.75]
    assert one.loss_grad(params, x, 1.0) == two.loss_grad(params, x, 1.0)


def test_a_forward_of_several_arguments_and_results_unpacks() -> None:
    text = """layer Cell(n):
    param W[n, n] = 0.5
    param U[n, n] = -0.25
    def forward(x[n], h[n]):
        h2 = tanh(W @ x + U @ h)
        return h2, h2 * x

net c = Cell(2)

def run(x[2]):
    h, y = c(x, [0.0, 0.0])
    h, y = c(y, h)
    return sum(h) + sum(y)
"""
    mod = load_source(text, "cell.exg")
    params = _random_params(mod, 6)
    p = mod.params_by_name(params)

    def cell(x: list[float], h: list[float]) -> tuple[list[float], list[float]]:
        h2 = [math.tanh(sum(w * v for w, v in zip(p["c.W"][i], x))
                        + sum(u * v for u, v in zip(p["c.U"][i], h))) for i in range(2)]
        return h2, [a * b for a, b in zip(h2, x)]

    x = [0.8, -0.3]
    h, y = cell(x, [0.0, 0.0])
    h, y = cell(y, h)
    assert math.isclose(mod.run(params, x), sum(h) + sum(y), rel_tol=1e-12)


def test_the_built_in_mlp_and_one_written_as_layers_compute_the_same() -> None:
    """The prelude question: MLP(3, [4, 4, 1]) written with a layer type gives the same values
    and gradients as the built-in one, given the same weights by name."""
    layers = """layer Dense(nin, nout):
    param w[nout, nin] = uniform(-1, 1)
    param b[nout] = uniform(-1, 1)
    def forward(x[nin]):
        return tanh(w @ x + b)

net l0 = Dense(3, 4)
net l1 = Dense(4, 4)
net l2 = Dense(4, 1)

def f(x[3]):
    return l2(l1(l0(x)))[0]
"""
    builtin = "net n = MLP(3, [4, 4, 1])\n\ndef f(x[3]):\n    return n(x)\n"
    mine, theirs = load_source(layers, "l.exg"), load_source(builtin, "m.exg")
    params = theirs.init_params(0)
    by_name = theirs.params_by_name(params)
    same = mine.params_from_names({f"l{i}.{t}": by_name[f"n.layers.{i}.{t}"]
                                   for i in range(3) for t in ("w", "b")})
    x = [2.0, 3.0, -1.0]
    value, grad = theirs.f_grad(params, x)
    value2, grad2 = mine.f_grad(same, x)
    assert value == value2
    assert mine.params_by_name(grad2) == {f"l{i}.{t}": v for (name, v) in
                                          theirs.params_by_name(grad).items()
                                          for i, t in [(int(name.split(".")[2]),
                                                        name.split(".")[3])]}


def test_residual_example_trains() -> None:
    program = compile_program((EXAMPLES / "residual.exg").read_text(), "residual.exg")
    result = exprgrad.train(program, progress=False)
    assert result.stopped is None and result.losses[-1] < result.losses[0] / 20


def test_layers_at_the_repl_prompt() -> None:
    """A layer typed at the prompt (the block ends at the empty line), a network of it, a
    value computed with it and its gradient: d sum(k * x) / dk = x."""
    typed = ("layer Scale(n):\n    param k[n] = 2.0\n    def forward(x[n]):\n"
             "        return k * x\n\nnet s = Scale(2)\ny = sum(s([1, 3]))\ny\n:grad y\n")
    result = run_cli("repl", input=typed)
    assert result.returncode == 0, result.stderr
    assert "8" in result.stdout.splitlines()[0]
    assert "dy/ds.k.0 = 1" in result.stdout and "dy/ds.k.1 = 3" in result.stdout


@pytest.mark.parametrize("text, message", [
    ("layer D(n):\n    param W[n, n] = 1.0\n    def forward(x[n]):\n        return W @ x\n"
     "net d = D()\n", "5:9: type error: D(n) needs 'n'"),
    ("layer D(n):\n    param W[n, n] = 1.0\nnet d = D(2)\n", "1:7: type error: layer 'D' has no "
     "forward def"),
    ("layer D(n):\n    param W[n, n + 1] = 1.0\n    def forward(x[n]):\n        return W @ x\n"
     "net d = D(2)\n", "4:18: type error: '@' cannot combine"),
    ("layer D(n):\n    net e = D(n)\n    def forward(x[n]):\n        return x\n",
     "2:13: type error: layer 'D' contains a network of its own type"),
    ("layer D(n):\n    param W[n, n] = 1.0\n    def forward(x[n]):\n        return W @ x\n"
     "net d = D(2)\ndef f(x[3]):\n    return sum(d(x))\n", "7:18: type error: 'd' takes "
     "a vector [2] here, got a vector [3]"),
    ("layer D(n):\n    def forward(x[n]):\n        return x, x\nnet d = D(2)\n"
     "def f(x[2]):\n    return sum(d(x))\n", "6:16: type error: 'd' returns 2 values"),
    ("layer D(n):\n    def forward(x[n]):\n        return x\nnet d = D(2, m=3)\n",
     "4:14: name error: D(n) has no argument 'm'"),
    ("layer D(n, n):\n    def forward(x[n]):\n        return x\n",
     "1:12: name error: 'n' is already defined in layer 'D'"),
    ("layer D(n):\n    def forward(x[n]):\n        return x\ndef f(x[2]):\n    return D(x)\n",
     "5:12: type error: 'D' is a layer type"),
    ("net d = Dence(2)\nlayer Dense(n):\n    def forward(x[n]):\n        return x\n",
     "1:9: name error: unknown network kind 'Dence'"),
    ("param W[3, 2, 2] = 1.0\n", "1:15: type error: values have at most two dimensions"),
    ("def f(x[M]):\n    return sum(x)\n", "1:9: name error: 'M' is not defined"),
    ("def f(x[0]):\n    return 1\n", "1:9: type error: a dimension is a whole number"),
    ("N = 1.5\ndef f(x[N]):\n    return 1\n", "2:9: type error: a dimension is a whole number"),
])
def test_mistakes_are_located(tmp_path, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "layers.exg").write_text(text)
    result = run_cli("compile", str(tmp_path / "layers.exg"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr and "^" in result.stderr, result.stderr


def test_a_mistake_inside_a_layer_names_the_network_being_made(tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = ("layer D(n):\n    def forward(x[n]):\n        return x + y\n\nnet d = D(2)\n")
    (tmp_path / "l.exg").write_text(text)
    result = run_cli("compile", str(tmp_path / "l.exg"))
    assert result.returncode == 2
    assert "3:20: name error: 'y' is not defined" in result.stderr
    assert "made by 'net d = D(...)' on line 5" in result.stderr


def test_import_hook_and_draw_of_a_network_of_layers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``import model`` of a file with layer types gives the module load_source gives; the
    collapsed drawing (Graphviz's dot) shows one box per network."""
    (tmp_path / "model.exg").write_text(SOURCE)
    code = ("import exprgrad, json\nexprgrad.install()\nimport model\n"
            "print(json.dumps(model.f(model.init_params(0), [0.5, -1.0, 2.0])))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stderr
    mod = load_source(SOURCE, "model.exg")
    assert float(result.stdout) == mod.f(mod.init_params(0), [0.5, -1.0, 2.0])
    drawn = run_cli("graph", str(tmp_path / "model.exg"), "f", "--collapse", "-o",
                    str(tmp_path / "f.svg"))
    assert drawn.returncode == 0, drawn.stderr
    svg = (tmp_path / "f.svg").read_text()
    for box in (">d<", ">r1<", ">r2<"):
        assert box in svg


def test_layers_nested_past_the_limit_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from exprgrad.limits import MAX_LAYER_DEPTH

    def chain(depth: int) -> str:
        text = "layer L0(n):\n    param w = 1.0\n    def forward(x):\n        return w * x\n"
        for k in range(1, depth + 1):
            text += (f"layer L{k}(n):\n    net inner = L{k - 1}(n)\n    def forward(x):\n"
                     "        return inner(x)\n")
        return text + f"net top = L{depth}(1)\ndef f(x):\n    return top(x)\n"

    mod = load_source(chain(MAX_LAYER_DEPTH - 1), "deep.exg")
    assert mod.param_names() == ["top" + ".inner" * (MAX_LAYER_DEPTH - 1) + ".w"]
    assert mod.f([3.0], 2.0) == 6.0
    (tmp_path / "deep.exg").write_text(chain(MAX_LAYER_DEPTH))
    result = run_cli("compile", str(tmp_path / "deep.exg"))
    assert result.returncode == 2 and "layers nested more than 100 deep" in result.stderr


def test_the_only_network_predicts_when_it_is_made_of_a_layer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """y = 3 x0 + x1, fitted exactly by a linear layer: the predictions are the targets."""
    (tmp_path / "p.exg").write_text(
        "layer Lin(n):\n    param w[n] = 0.1\n    def forward(x[n]):\n        return dot(w, x)\n"
        "net r = Lin(2)\ndef loss(x[2], y):\n    return (r(x) - y) ** 2\n"
        "data xs = [[1, 2], [0, 1], [1, 0]]\ndata ys = [5, 1, 3]\n"
        "train loss(xs, ys): steps=400, lr=0.05\n")
    trained = run_cli("train", str(tmp_path / "p.exg"), "--save", str(tmp_path / "p.json"))
    assert trained.returncode == 0, trained.stderr
    assert "prediction" in trained.stdout
    result = run_cli("predict", str(tmp_path / "p.exg"), "--params", str(tmp_path / "p.json"))
    assert result.returncode == 0, result.stderr
    assert [round(float(v), 6) for v in result.stdout.split()] == [5.0, 1.0, 3.0]


def test_unpacking_one_vector_a_def_or_network_returns() -> None:
    text = ("def g(x):\n    return [x, 2 * x]\n\nlayer Two(n):\n    param w[2] = [3, 4]\n"
            "    def forward(x):\n        return w * x\n\nnet t = Two(1)\n\n"
            "def f(x):\n    a, b = g(x)\n    c, d = t(x)\n    return a * b + c * d\n")
    mod = load_source(text, "u.exg")
    x = 1.5
    value, grad = mod.f_grad(mod.init_params(0), x)
    assert value == x * 2 * x + 3 * x * 4 * x
    assert list(grad) == [4 * x * x, 3 * x * x]  # d/dw of 2x^2 + w0 x w1 x, w = [3, 4]


def test_collapsed_drawing_is_one_box_per_outermost_network(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Nested networks, a forward of two results and a parameter-only subexpression
    (0.5 * g): every operation of the network r is inside r's one box."""
    text = ("layer Lin(n):\n    param w[n] = 0.5\n    def forward(x[n]):\n        return w * x\n"
            "layer Outer(n):\n    net inner = Lin(n)\n    param g = 2.0\n    def forward(x[n]):\n"
            "        return x + 0.5 * g * inner(x)\n"
            "layer Top(n):\n    net b1 = Outer(n)\n    def forward(x[n]):\n"
            "        return b1(x), x\n"
            "net r = Top(2)\ndef f(x[2]):\n    a, b = r(x)\n    return sum(a * b)\n")
    (tmp_path / "c.exg").write_text(text)
    result = run_cli("graph", str(tmp_path / "c.exg"), "f", "--collapse", "-o",
                     str(tmp_path / "c.dot"))
    assert result.returncode == 0, result.stderr
    dot = (tmp_path / "c.dot").read_text()
    boxes = [line for line in dot.splitlines() if "box3d" in line]
    assert len(boxes) == 1 and 'label="r"' in boxes[0], boxes


def test_layers_doubling_past_the_network_limit_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each layer holds two networks of the one before: 2^40 networks, refused at once
    (counted over the layer types); 2^10 of them compile and sum to 2^10 * w."""
    def doubling(levels: int) -> str:
        text = "layer L0(k):\n    param w = 1.0\n    def forward(x):\n        return w * x\n"
        for i in range(1, levels + 1):
            text += (f"layer L{i}(k):\n    net a = L{i - 1}(k)\n    net b = L{i - 1}(k)\n"
                     "    def forward(x):\n        return a(x) + b(x)\n")
        return text + f"net top = L{levels}(1)\ndef f(x):\n    return top(x)\n"

    (tmp_path / "exp.exg").write_text(doubling(40))
    result = run_cli("compile", str(tmp_path / "exp.exg"))
    assert result.returncode == 2 and "MAX_NETWORKS" in result.stderr, result.stderr
    mod = load_source(doubling(6), "d.exg")
    assert mod.PARAM_COUNT == 64 and mod.f(mod.init_params(0), 0.5) == 32.0
