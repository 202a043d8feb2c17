"""float32 on the numpy backend: a float32 module computes in float32 throughout and agrees with
the float64 module; training, checking and compiling take the dtype; the scalar backend refuses
it. References are float64 results (the float64 module, float64 training, float64 central
differences), never the float32 code's own numbers."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT
from test_numpy_backend import PROGRAMS, _random_program

import exprgrad
from exprgrad.emit.arrays import generate_numpy
from exprgrad.emit.load import module_from_code
from exprgrad.errors import ExprgradError
from exprgrad.lower.lowering import compile_program
from exprgrad.run import training

SOURCES = {**PROGRAMS, **{f"random{s}": _random_program(s) for s in range(0, 60, 3)}}


def _modules(name: str) -> tuple[Any, Any, Any]:
    program = compile_program(SOURCES[name], f"{name}.exg")
    f64 = module_from_code(generate_numpy(program), "m64", "<m64>")
    f32 = module_from_code(generate_numpy(program, dtype="float32"), "m32", "<m32>")
    return program, f64, f32


def _data(program: Any, seed: int, n: int = 9) -> tuple[list[Any], np.ndarray]:
    """Float32-representable arguments and parameters, so both modules see the same numbers."""
    rng = np.random.default_rng(seed)
    fn = program.functions["loss"]
    cols = [rng.uniform(-1.5, 1.5, (n, *s)).astype(np.float32) for s in fn.arg_shapes]
    params = rng.uniform(-1, 1, len(program.param_order)).astype(np.float32)
    return cols, params


def _float64_seen(f: Any, *args: Any) -> list[str]:
    """Run ``f(*args)``; the names of its locals that ever held float64 data (traced per line;
    the arguments as passed excepted)."""
    seen: list[str] = list(f.__code__.co_varnames[:f.__code__.co_argcount])

    def local_tracer(frame: Any, event: str, arg: Any) -> Any:
        for name, value in frame.f_locals.items():
            if isinstance(value, (np.ndarray, np.generic)) and value.dtype == np.float64 \
                    and name not in seen:
                seen.append(name)
        return local_tracer

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        return local_tracer if frame.f_code is f.__code__ else None

    sys.settrace(tracer)
    try:
        f(*args)
    finally:
        sys.settrace(None)
    return seen[f.__code__.co_argcount:]


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_float32_module_makes_no_float64_array(name: str) -> None:
    program, _, f32 = _modules(name)
    cols, params = _data(program, 1)
    dout = np.ones(len(cols[0]), np.float32)
    # float64 arguments too: the module converts them
    wide = [c.astype(np.float64) for c in cols]
    for f, args in ((f32.loss, (params, *wide)), (f32.loss_grad, (params, *wide)),
                    (f32.loss_vjp, (params.tolist(), *wide, dout))):
        assert _float64_seen(f, *args) == [], (f.__name__, SOURCES[name])
        out = f(*args)
        for a in (out if isinstance(out, tuple) else (out,)):
            for x in (a if isinstance(a, tuple) else (a,)):
                assert x.dtype == np.float32, (f.__name__, SOURCES[name])
    assert f32.DTYPE == "float32"


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_float32_values_and_gradients_agree_with_float64(name: str) -> None:
    program, f64, f32 = _modules(name)
    cols, params = _data(program, 2)
    v32, g32 = f32.loss_grad(params, *cols)
    v64, g64 = f64.loss_grad(params, *cols)
    assert f64.DTYPE == "float64" and v64.dtype == np.float64
    # float32 rounds at 6e-8; sums over the batch and the layers add a few roundings
    np.testing.assert_allclose(v32, v64, rtol=1e-5, atol=1e-5 * np.abs(v64).max(),
                               err_msg=SOURCES[name])
    np.testing.assert_allclose(g32, g64, rtol=1e-5, atol=1e-5 * np.abs(g64).max(),
                               err_msg=SOURCES[name])


def test_functions_of_arguments_and_constants_stay_float32() -> None:
    source = ("def f(x, v[3]):\n    w = [1.5, x, 2.0]\n    return sum(w * v) + max(x, 0.5) + "
              "relu(x) + step(x) + v[0]\n"
              "def c(x):\n    return [1.0, 2.0]\n")
    program = compile_program(source, "consts.exg")
    f32 = module_from_code(generate_numpy(program, dtype="float32"), "m32", "<m32>")
    f64 = module_from_code(generate_numpy(program), "m64", "<m64>")
    x = np.asarray([-0.5, 0.25, 1.0], np.float32)
    v = np.asarray([[1, 2, 3], [4, 5, 6], [-1, 0.5, 2]], np.float32)
    assert _float64_seen(f32.f_grad, x, v) == []
    (val32, (dx32, dv32)), (val64, (dx64, dv64)) = f32.f_grad(x, v), f64.f_grad(x, v)
    for a, b in ((val32, val64), (dx32, dx64), (dv32, dv64)):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert f32.c(x).dtype == np.float32 and _float64_seen(f32.c_grad, x) == []


def test_float64_is_the_default_and_unchanged() -> None:
    program = compile_program(PROGRAMS["logsumexp"], "lse.exg")
    code = generate_numpy(program)
    assert code == generate_numpy(program, dtype="float64")
    assert "DTYPE = 'float64'" in code and "float32" not in code


# ---- training -----------------------------------------------------------------------------------


def _record_dtypes(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """Every training step's dtypes of parameters, optimizer state and result (training goes
    through the generated fused step, exprgrad.run.training.FusedStep)."""
    seen: list[set[str]] = []
    call = training.FusedStep.__call__

    def recording(self: Any, params: Any, idx: Any) -> Any:
        loss, new = call(self, params, idx)
        seen.append({str(a.dtype) for a in (params, *self.state, *self.columns, new)})
        return loss, new

    monkeypatch.setattr(training.FusedStep, "__call__", recording)
    return seen


@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_float32_training_stays_float32_and_reaches_the_float64_loss(
        opt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _record_dtypes(monkeypatch)
    lr = {"sgd": 0.3, "momentum": 0.05, "adam": 0.01}[opt]
    f32 = exprgrad.train(EXAMPLES / "moons.exg", dtype="float32", backend="numpy", optimizer=opt,
                         lr=lr, steps=300, progress=False)
    assert seen and all(s == {"float32"} for s in seen)
    seen.clear()
    f64 = exprgrad.train(EXAMPLES / "moons.exg", backend="numpy", optimizer=opt, lr=lr,
                         steps=300, progress=False)
    assert seen and all(s == {"float64"} for s in seen)
    assert f32.dtype == "float32" and "float32" in repr(f32) and f64.dtype == "float64"
    assert all(type(p) is float for p in f32.params)
    assert f32.losses[-1] < 0.2 * f32.losses[0]
    assert abs(f32.losses[-1] - f64.losses[-1]) <= 0.02 * f64.losses[-1] + 1e-4


def test_float32_softmax_training_like_digits(tmp_path: Path) -> None:
    """A small softmax cross-entropy classifier (digits' shape, made-up data), minibatches."""
    rng = random.Random(0)
    rows = []
    for _ in range(120):
        k = rng.randrange(3)
        x = [rng.gauss(1.0 if i == k else 0.0, 0.3) for i in range(8)]
        rows.append(x + [1.0 if j == k else 0.0 for j in range(3)])
    (tmp_path / "d.csv").write_text("\n".join(",".join(map(repr, r)) for r in rows) + "\n")
    (tmp_path / "d.exg").write_text(
        "net n = MLP(8, [6, 3], out=linear)\n"
        "def loss(x[8], y[3]):\n    z = n(x)\n    return logsumexp(z) - dot(y, z)\n"
        "data xs = csv(\"d.csv\", cols=[0, 1, 2, 3, 4, 5, 6, 7])\n"
        "data ys = csv(\"d.csv\", cols=[8, 9, 10])\n"
        "train loss(xs, ys): optimizer=adam, lr=0.02, steps=60, batch_size=40, reduce=mean, "
        "backend=numpy, dtype=float32\n")
    f32 = exprgrad.train(tmp_path / "d.exg", progress=False)
    f64 = exprgrad.train(tmp_path / "d.exg", dtype="float64", progress=False)
    assert f32.dtype == "float32" and f64.dtype == "float64"
    assert f32.losses[-1] < 0.1 * f32.losses[0]
    np.testing.assert_allclose(f32.losses, f64.losses, rtol=1e-3, atol=1e-4)


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exprgrad", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_cli_train_flag_and_json() -> None:
    result = _cli("train", str(EXAMPLES / "moons.exg"), "--dtype", "float32", "--backend", "numpy",
                  "--steps", "50", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["dtype"] == "float32" and summary["backend"] == "numpy"
    text = _cli("train", str(EXAMPLES / "moons.exg"), "--dtype", "float32", "--steps", "5",
                "--quiet")
    assert text.returncode == 0 and "numpy backend, float32" in text.stdout  # auto chose numpy


@pytest.mark.parametrize("args, message", [
    (["train", "seed_mlp.exg", "--dtype", "float32", "--backend", "python"],
     "dtype=float32 needs the numpy backend"),
    (["compile", "seed_mlp.exg", "--dtype", "float32"], "dtype float32 needs the numpy backend"),
    (["train", "seed_mlp.exg", "--dtype", "float16"], "invalid choice"),
])
def test_cli_dtype_errors(args: list[str], message: str) -> None:
    result = _cli(*args, cwd=EXAMPLES)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    if "needs the numpy backend" in message:
        assert "hint:" in result.stderr and "backend" in result.stderr.split("hint:")[1]


def test_train_statement_dtype_errors_point_at_the_option(tmp_path: Path) -> None:
    source = (EXAMPLES / "seed_mlp.exg").read_text().replace(
        "train loss(xs, ys):", "train loss(xs, ys): dtype=float16,")
    (tmp_path / "bad.exg").write_text(source)
    result = _cli("train", str(tmp_path / "bad.exg"))
    assert result.returncode == 2 and "dtype is 'float64'" in result.stderr
    assert "^" in result.stderr and "Traceback" not in result.stderr


def test_api_dtype_errors() -> None:
    text = (EXAMPLES / "tour.exg").read_text()
    with pytest.raises(ExprgradError, match="needs the numpy backend"):
        exprgrad.compile_source(text, dtype="float32")
    with pytest.raises(ExprgradError, match="no dtype 'float16'"):
        exprgrad.compile_source(text, backend="numpy", dtype="float16")
    with pytest.raises(ExprgradError, match="needs the numpy backend"):
        exprgrad.train(EXAMPLES / "seed_mlp.exg", dtype="float32", backend="python")
    with pytest.raises(ExprgradError, match="no dtype"):
        exprgrad.check(EXAMPLES / "tour.exg", dtype="float16")


def test_compiled_float32_module_imports_without_exprgrad(tmp_path: Path) -> None:
    result = _cli("compile", str(EXAMPLES / "moons.exg"), "--backend", "numpy", "--dtype",
                  "float32", "-o", str(tmp_path / "moons32.py"))
    assert result.returncode == 0, result.stderr
    script = ("import numpy as np, moons32\n"
              "x = np.asarray([[0.5, -0.2], [1.0, 0.3]])\n"
              "v, g = moons32.loss_grad(np.zeros(len(moons32.PARAM_NAMES)) + 0.1, x, [1.0, -1.0])\n"
              "print(moons32.DTYPE, v.dtype, g.dtype)\n")
    run = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, "
                          f"{str(tmp_path)!r}); exec({script!r})"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["float32", "float32", "float32"]
    loaded = exprgrad.load(EXAMPLES / "moons.exg", backend="numpy", dtype="float32")
    assert loaded.DTYPE == "float32"


# ---- check --------------------------------------------------------------------------------------

_RULE = """def my_tanh(x):
    e = exp(2 * x)
    t = (e - 1) / (e + 1)
    grad x = {rule}
    return t

net n = Layer(2, 3, act=linear)

def loss(x[2], y):
    return (my_tanh(sum(n(x))) - y) ** 2
"""


def test_check_float32_passes_a_right_rule_and_catches_a_wrong_one(tmp_path: Path) -> None:
    good = tmp_path / "good.exg"
    good.write_text(_RULE.format(rule="(1 - t ** 2) * dout"))
    report = exprgrad.check(good, dtype="float32")
    lines = [x for x in report.lines if x.method == "float32"]
    assert report.ok and lines and all(x.status == "ok" for x in lines)
    # 1% off: float32 rounding (under 1e-5 here) would never explain it
    bad = tmp_path / "bad.exg"
    bad.write_text(_RULE.format(rule="1.01 * (1 - t ** 2) * dout"))
    report = exprgrad.check(bad, dtype="float32")
    wrong = {(x.function, x.method) for x in report.lines if x.status == "mismatch"}
    assert {("my_tanh", "float32"), ("loss", "float32")} <= wrong
    result = _cli("check", str(bad), "loss", "--dtype", "float32")
    assert result.returncode == 1
    assert any(line.startswith("MISMATCH loss") and " float32 " in line
               for line in result.stdout.splitlines())


def test_check_float32_on_the_examples() -> None:
    for name in ("tour.exg", "moons.exg"):
        result = _cli("check", str(EXAMPLES / name), "--dtype", "float32", "--budget", "10")
        assert result.returncode == 0, result.stdout + result.stderr
        assert " float32" in result.stdout
