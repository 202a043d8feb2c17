"""Lean modules and no wasted work: parameters described per tensor, one source for initial
values, commands that generate only what they use, limits refused before the work they bound.

Expected values come from outside the code under test: ``tests/data/old_net*`` were written by
exprgrad before this change (its per-element ``PARAM_NAMES`` and ``init_params`` in the scalar
module, a parameter file saved by ``train --save`` and its predictions), and the initial values
below are drawn here with ``random.Random`` in the documented order.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

import exprgrad
from exprgrad.emit import build, scalar, verify
from exprgrad.emit.arrays import generate_numpy
from exprgrad.emit.module import initial_params
from exprgrad.errors import ExprgradLimitError
from exprgrad.lower.lowering import compile_program, program_of
from exprgrad.run.paramsio import load_params
from exprgrad.ui.train_cmd import predict_values

DATA = ROOT / "tests" / "data"
OLD = DATA / "old_net.exg"

MIXED = """param w = 1
param v[3] = uniform(-2, 2)
param m[2, 2] = [[1, 2], [3, -0.0]]
net n = Neuron(2)
param q[2] = normal(0, 1)
def f(x):
    return w * x + v[0] + m[0, 1] + n([x, x]) + q[1]
"""


def _modules(text: str) -> tuple[object, object]:
    return (exprgrad.load_source(text, "mixed.exg"),
            exprgrad.load_source(text, "mixed.exg", backend="numpy"))


def test_numpy_module_grows_with_layers_not_weights() -> None:
    src = "net n = MLP(784, [512, 512, 10])\ndef predict(x[784]):\n    return n(x)\n"
    code = exprgrad.compile_source(src, "mnist.exg", backend="numpy")
    assert len(code.splitlines()) < 300  # 669,849 lines before (one per weight)
    assert len(code) < 20_000
    deeper = exprgrad.compile_source(src.replace("[512, 512, 10]", "[512, 512, 512, 10]"),
                                     "mnist.exg", backend="numpy")
    assert len(deeper.splitlines()) - len(code.splitlines()) < 40  # a layer: a few lines


def test_names_are_computed_from_the_table_and_match_the_old_modules() -> None:
    old = json.loads((DATA / "old_net_init.json").read_text())
    program = program_of(OLD)
    assert program.param_names == old["names"]
    for backend in ("python", "numpy"):
        module = exprgrad.load(OLD, backend=backend)
        assert "PARAM_NAMES" not in vars(module)  # computed when first read, then kept
        assert module.PARAM_NAMES == tuple(old["names"]) == tuple(module.param_names())
        assert "PARAM_NAMES" in vars(module)
        with pytest.raises(AttributeError):
            _ = module.NO_SUCH_NAME


def test_init_is_identical_across_backends_and_to_the_old_scalar_module() -> None:
    old = json.loads((DATA / "old_net_init.json").read_text())
    program = program_of(OLD)
    scalar_mod = exprgrad.load(OLD)
    numpy_mod = exprgrad.load(OLD, backend="numpy")
    assert scalar_mod.init_params(3) == numpy_mod.init_params(3) == old["init3"]
    assert initial_params(program, 3) == old["init3"]


def test_init_draws_in_flat_order_from_one_generator() -> None:
    rng = random.Random(5)
    expected = [1.0, *(rng.uniform(-2, 2) for _ in range(3)), 1.0, 2.0, 3.0, -0.0,
                *(rng.uniform(-1, 1) for _ in range(3)), *(rng.gauss(0, 1) for _ in range(2))]
    scalar_mod, numpy_mod = _modules(MIXED)
    for values in (scalar_mod.init_params(5), numpy_mod.init_params(5),
                   initial_params(compile_program(MIXED, "mixed.exg"), 5)):
        assert [repr(v) for v in values] == [repr(v) for v in expected]  # -0.0 stays -0.0
    assert scalar_mod.PARAM_NAMES == ("w", "v.0", "v.1", "v.2", "m.0.0", "m.0.1", "m.1.0",
                                      "m.1.1", "n.w.0", "n.w.1", "n.b", "q.0", "q.1")
    assert numpy_mod.PARAM_NAMES == scalar_mod.PARAM_NAMES


def test_params_by_name_round_trips_on_both_backends() -> None:
    flat = [float(i) for i in range(13)]
    for module in _modules(MIXED):
        named = module.params_by_name(flat)
        assert named == {"w": 0.0, "v": [1.0, 2.0, 3.0], "m": [[4.0, 5.0], [6.0, 7.0]],
                         "n.w": [[8.0, 9.0]], "n.b": [10.0], "q": [11.0, 12.0]}
        assert module.params_from_names(named) == flat
        with pytest.raises(ValueError):
            module.params_from_names({**named, "m": [[1.0, 2.0]]})
    net = exprgrad.load(OLD, backend="numpy")
    named = net.params_by_name(list(range(16)))
    # n.layers.0: neuron i's weights then its bias, as the seed's parameters() lists them
    assert named["n.layers.0.w"] == [[0.0, 1.0], [3.0, 4.0], [6.0, 7.0]]
    assert named["n.layers.0.b"] == [2.0, 5.0, 8.0]
    assert named["n.layers.1.w"] == [[9.0, 10.0, 11.0]] and named["v"] == [14.0, 15.0]


def test_old_parameter_files_load_and_predict_as_before() -> None:
    program = program_of(OLD)
    params = load_params(str(DATA / "old_net_params.json"), program)
    saved = json.loads((DATA / "old_net_params.json").read_text())["params"]
    assert params == list(saved.values())
    expected = [0.8652636294226151, -0.35362047393106655, -0.3149295926697328,
                0.738549073465168]  # `exprgrad predict` before this change
    assert predict_values(program, params) == pytest.approx(expected, rel=1e-12)


def test_train_on_numpy_never_generates_scalar_code(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    def refuse(*args: object, **kwargs: object) -> str:
        raise AssertionError("the scalar backend was asked for code")

    monkeypatch.setattr(scalar, "generate", refuse)
    monkeypatch.setattr(build, "generate", refuse)
    result = exprgrad.train(str(OLD), steps=3, backend="numpy", progress=False)
    assert result.backend == "numpy" and len(result.losses) == 3
    assert result.params != initial_params(program_of(OLD), 3)
    from exprgrad.ui.cli import main

    out = tmp_path / "p.json"
    code = main(["train", str(OLD), "--backend", "numpy", "--steps", "2", "--quiet",
                 "--save", str(out)])
    assert code == 0 and out.exists()


def test_training_starts_from_init_params_on_both_backends() -> None:
    old = json.loads((DATA / "old_net_init.json").read_text())
    for backend in ("python", "numpy"):
        result = exprgrad.train(str(OLD), steps=0, backend=backend, progress=False)
        assert result.params == old["init3"]


def _big_scalar_net() -> str:
    # 180,901 weights (under the scalar parameter limit) but about 1.1 million statements
    return ("net n = MLP(300, [300, 300, 1])\ndef loss(x[300], y):\n    return (n(x) - y) ** 2\n"
            f"data xs = [[{', '.join(['0.5'] * 300)}]]\ndata ys = [1.0]\n"
            "train loss(xs, ys): steps=1\n")


def test_scalar_limit_refused_before_emission_with_a_fitting_hint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("statements were emitted")

    monkeypatch.setattr(scalar.ScalarWriter, "emit", never)
    program = compile_program(_big_scalar_net(), "big.exg")
    with pytest.raises(ExprgradLimitError) as compiled:  # (emit refuses: nothing was written)
        scalar.generate(program)
    assert "MAX_SCALAR_STATEMENTS" in str(compiled.value)
    assert "--backend numpy" in (compiled.value.hint or "")
    with pytest.raises(ExprgradLimitError) as trained:
        exprgrad.train(compile_program(_big_scalar_net(), "big.exg"), backend="python", steps=1,
                       progress=False)
    assert "train with the numpy backend" in (trained.value.hint or "")
    with pytest.raises(ExprgradLimitError) as checked:
        exprgrad.check(compile_program(_big_scalar_net(), "big.exg"))
    assert "--backend" not in (checked.value.hint or "")  # check has no numpy backend


def test_auto_backend_trains_a_network_too_large_for_scalar_code() -> None:
    program = compile_program(_big_scalar_net(), "big.exg")
    result = exprgrad.train(program, steps=1, lr=1e-4, progress=False)  # backend=auto, 1 example
    assert result.backend == "numpy" and len(result.losses) == 1


def test_chunked_verification_refuses_what_whole_verification_refuses(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The allowlist's attacks again, with long-function pieces of 3 lines."""
    good = exprgrad.compile_source("def f(x):\n" + "    x = exp(x) * x\n" * 8 + "    return x\n")
    monkeypatch.setattr(verify, "CHUNK_LINES", 3)
    verify.verify_module(good)
    line = "    _x = _exp(x) * x\n"
    assert line in good
    for attack in (good.replace(line, "    _x = open('x')\n"),
                   good.replace(line, "    import os\n"),
                   good.replace(line, "    _x = 1\nimport os\n"),
                   good.replace(line, "    _x = 1\n\n\nimport os\n"),
                   good.replace(line, "    _x = (1 +\n    2)\n"),
                   good.replace(line, "    return 1\n"),
                   good.replace(line, "    'text'\n")):
        assert attack != good
        with pytest.raises(verify.UnsafeCodeError):
            verify.verify_module(attack)


_MEASURE = """
import resource, sys
from exprgrad.lower.lowering import compile_program
from exprgrad.emit.arrays import generate_numpy
from exprgrad.emit.verify import verify_module
src = "def f(x):\\n" + "    x = sin(x) * x\\n" * 3000 + "    return x\\n"
code = generate_numpy(compile_program(src, "chain.exg"), verify=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
verify_module(code)
print(len(code.splitlines()), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_verification_memory_does_not_grow_with_the_module() -> None:
    out = subprocess.run([sys.executable, "-c", _MEASURE], capture_output=True, text=True,
                         cwd=ROOT, timeout=300, check=True).stdout.split()
    lines, grown_mb = int(out[0]), int(out[1])
    assert lines > 60_000
    assert grown_mb < 60  # the whole module's ast took about 5 kB a line: 300 MB here


def test_generate_numpy_kinds_and_scalar_kinds_write_only_those() -> None:
    program = program_of(OLD)
    code = generate_numpy(program, kinds=("grad",))
    assert "def loss_grad(" in code and "def loss(" not in code and "_vjp" not in code
    code = scalar.generate(program, kinds=("grad_sum",))
    assert "def loss_grad_sum(" in code and "def loss_grad(" not in code
    assert "def loss(" not in code and "_vjp" not in code
