"""One numpy-backend module on numpy arrays, array-api-strict arrays and PyTorch CPU tensors.

Every function of a generated numpy module has an array-API twin that arrays of another library
are handed to. The same module's values and gradients (and its fused training steps) are
computed three ways — numpy's own code on numpy arrays, the twin on array-api-strict arrays
(the array API standard 2023.12 and nothing beyond it: a call outside it fails there) and the
twin on PyTorch tensors — and must agree to 1e-12 in float64. Training through PyTorch
(``--device torch-cpu``) must follow numpy training step for step; ``--device cuda`` on a
machine without a GPU must say so clearly.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import array_api_strict
import numpy as np
import pytest
import torch
from array_api_strict._array_object import Array as StrictArray
from conftest import EXAMPLES, ROOT, run_cli
from test_numpy_backend import _random_program

import exprgrad
from exprgrad.emit import verify
from exprgrad.emit.arrays import generate_numpy
from exprgrad.emit.load import module_from_code
from exprgrad.emit.verify import UnsafeCodeError, verify_module
from exprgrad.errors import ExprgradValueError
from exprgrad.ir.program import Program
from exprgrad.lower.lowering import compile_program

#: where, comparisons, max and min (of two and of a vector), relu, sigmoid, softplus, step,
#: logsumexp, softmax, abs, constants handed to functions
SELECT = """\
param W[3, 4] = uniform(-1, 1)
param b[3] = 0.1
param s = 0.5

def loss(x[4], y[3]):
    z = W @ x + b
    h = where(z > 0.2, z * s, sigmoid(z) - 1)
    m = max(h[0], h[1]) + min(h[1], 0.25) + max(h) - min(z)
    p = softmax(h)
    q = where(x[0] < 0, 1.0, x[1])
    return logsumexp(h) - dot(p, y) + m * m + softplus(s * x[2]) + sum(relu(z)) + \\
        abs(s - x[3]) + mean((z >= 0) * z) + q * s + step(x[0]) * h[2]
"""

#: matrix arguments and parameters, transposes, outer products, reductions along an axis
MATRIX = """\
param A[3, 3] = uniform(-1, 1)
param v[3] = normal(0, 0.5)
param c = 0.3

def loss(X[3, 2], y[2]):
    M = A @ X
    T = transpose(M) @ A
    o = outer(v, y)
    r = sum(M * o, axis=0)
    q = max(T, axis=1)
    k = concat(r, q)
    return sum(k * k) + logsumexp(T, axis=1)[0] + dot(v, X[:, 0]) + trace(A @ A) * c + \\
        sum(softmax(T, axis=0)[1, :] * v) + sqrt(1 + c * c) + tanh(mean(X)) ** 3
"""

#: functions of arguments only (per-example gradients), of several outputs, of no argument
PLAIN = """\
def f(x, y[2]):
    return atan2(x, y[0]) + hypot(y[0], y[1]) * exp(-x * x) + log1p(y[1] * y[1]) + cosh(x)

def g(m[2, 2], v[2]):
    return m @ v, transpose(m) @ m

def h(x):
    return where(x > 0, abs(x) ** 1.5, -x) + sign(x) + expm1(x / 4) + sinh(x / 3)
"""

PROGRAMS: dict[str, str] = {
    "seed_mlp": (EXAMPLES / "seed_mlp.exg").read_text(),
    "moons": (EXAMPLES / "moons.exg").read_text(),
    "custom_tanh": (EXAMPLES / "seed_mlp_custom_tanh.exg").read_text(),  # grad rules
    "lstm": (EXAMPLES / "lstm.exg").read_text(),
    "residual": (EXAMPLES / "residual.exg").read_text(),
    "select": SELECT,
    "matrix": MATRIX,
    "plain": PLAIN,
    **{f"random{seed}": _random_program(seed) for seed in (1, 4, 9)},
}

STEPS = ("sgd", "momentum", "adam")
BATCH = 5


@pytest.fixture(autouse=True, scope="module")
def _standard_2023() -> Iterator[None]:
    """array-api-strict as the 2023.12 standard: nothing newer is accepted."""
    array_api_strict.set_array_api_strict_flags(api_version="2023.12")
    yield
    array_api_strict.reset_array_api_strict_flags()


@functools.cache
def _compiled(name: str, dtype: str = "float64") -> tuple[Program, Any, str]:
    folder = str(EXAMPLES / f"{name}.exg")  # (the examples' csv data are found beside them)
    program = compile_program(PROGRAMS[name], folder)
    code = generate_numpy(program, steps=STEPS, dtype=dtype)
    return program, module_from_code(code, f"xp_{name}", f"<xp_{name}>"), code


#: the other namespaces: how a numpy array becomes one of their arrays, and their array type
NAMESPACES: dict[str, tuple[Callable[[np.ndarray], Any], type]] = {
    "strict": (lambda a: array_api_strict.asarray(a), StrictArray),
    "torch": (lambda a: torch.asarray(a), torch.Tensor),
}


def _to_numpy(value: Any, kind: type) -> Any:
    """Results as numpy (nested tuples kept), asserting each array is of the type ``kind``."""
    if isinstance(value, (tuple, list)):
        return type(value)(_to_numpy(v, kind) for v in value)
    assert isinstance(value, kind), f"{type(value).__name__} returned, not {kind.__name__}"
    return np.from_dlpack(value.detach() if isinstance(value, torch.Tensor) else value)


def _calls(program: Program, module: Any, seed: int, dtype: str = "float64"
           ) -> Iterator[tuple[str, Callable[..., Any], list[Any]]]:
    """Every generated function of the module with its array arguments: ``(label, call,
    arrays)``, another namespace gets ``arrays`` as its own arrays (a training step's call adds
    adam's ``t`` and the settings, Python numbers, in their places)."""
    rng = np.random.default_rng(seed)
    params = np.asarray(module.init_params(seed)) + rng.normal(0, 0.1, module.PARAM_COUNT)
    params = params.astype(dtype)
    for fname, kinds in module.ENTRY_POINTS.items():
        fn = program.functions[fname]
        args = [rng.uniform(-1.5, 1.5, (BATCH, *s)).astype(dtype) for s in fn.arg_shapes]
        head = [params] if fn.uses_params else []
        for kind, pyname in kinds.items():
            f = getattr(module, pyname)
            label = f"{fname}.{kind}"
            if kind in ("value", "grad"):
                yield label, f, [*head, *args]
            elif kind == "vjp":
                douts = [rng.normal(size=(BATCH, *o.shape)).astype(dtype) for o in fn.outputs]
                yield label, f, [*head, *args, *douts]
            else:  # a training step: params, the optimizer's state, the batch, its settings
                state = {"step": [], "step_momentum": [rng.normal(size=params.shape)],
                         "step_adam": [rng.normal(size=params.shape),
                                       rng.uniform(0, 1, size=params.shape)]}[kind]
                t = (3,) if kind == "step_adam" else ()
                settings = {"step": (0.05, 0.5), "step_momentum": (0.05, 0.9, 0.5),
                            "step_adam": (0.01, 0.9, 0.999, 1e-8, 0.5)}[kind]

                def call(*a: Any, f: Any = f, n: int = len(state), t: tuple[int, ...] = t,
                         settings: tuple[float, ...] = settings) -> Any:
                    return f(a[0], *a[1:1 + n], *t, *a[1 + n:], *settings)

                yield label, call, [params, *(v.astype(dtype) for v in state), *args]


def _agree(got: Any, expected: Any, label: str, rtol: float, atol: float) -> None:
    if isinstance(expected, (tuple, list)):
        assert type(got) is type(expected) and len(got) == len(expected), label
        for g, e in zip(got, expected):
            _agree(g, e, label, rtol, atol)
        return
    expected = np.asarray(expected)
    assert np.shape(got) == expected.shape, label
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=label)


@pytest.mark.parametrize("namespace", sorted(NAMESPACES))
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_values_and_gradients_agree_across_namespaces(name: str, namespace: str) -> None:
    """Each function (values, gradients, vjps, the fused sgd/momentum/adam steps) gives the
    same numbers on the other namespace's arrays as numpy's code on numpy arrays, returned as
    that namespace's arrays in float64."""
    program, module, _ = _compiled(name)
    convert, kind = NAMESPACES[namespace]
    seen = 0
    for label, f, arrays in _calls(program, module, seed=len(name)):
        expected = f(*arrays)
        got = f(*[convert(a) for a in arrays])
        for leaf in _leaves(got):
            assert isinstance(leaf, kind) and "float64" in str(leaf.dtype), (label, leaf.dtype)
        _agree(_to_numpy(got, kind), expected, label, rtol=1e-12, atol=1e-12)
        seen += 1
    assert seen >= 3


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, (tuple, list)):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


@pytest.mark.parametrize("namespace", sorted(NAMESPACES))
@pytest.mark.parametrize("name", ["moons", "select", "matrix"])
def test_float32_modules_stay_float32_on_every_namespace(name: str, namespace: str) -> None:
    """A float32 module's twin computes in float32 (no float64 array on the way, where a
    setting or a constant could upcast it) and agrees with numpy's float32 code."""
    program, module, _ = _compiled(name, "float32")
    convert, kind = NAMESPACES[namespace]
    for label, f, arrays in _calls(program, module, seed=7, dtype="float32"):
        expected = f(*arrays)
        got = f(*[convert(a) for a in arrays])
        for leaf in _leaves(got):
            assert "float32" in str(leaf.dtype), (label, leaf.dtype)
        _agree(_to_numpy(got, kind), expected, label, rtol=2e-5, atol=2e-5)


def test_lists_join_the_arrays_of_another_library() -> None:
    """Lists (init_params' parameters) and numbers go onto the tensors' namespace and device;
    an argument of each of two libraries is an error, not a silent conversion."""
    program, module, _ = _compiled("moons")
    params = module.init_params(0)
    x = np.random.default_rng(0).normal(size=(6, 2))
    y = np.sign(x[:, 0])
    values, grad = module.loss_grad(params, torch.asarray(x), torch.asarray(y))
    assert isinstance(values, torch.Tensor) and isinstance(grad, torch.Tensor)
    np_values, np_grad = module.loss_grad(params, x, y)
    np.testing.assert_allclose(grad.numpy(), np_grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(values.numpy(), np_values, rtol=1e-12, atol=1e-12)
    with pytest.raises(TypeError, match="[Mm]ultiple namespaces"):
        module.loss_grad(torch.asarray(params), x, torch.asarray(y))
    with pytest.raises(TypeError, match="[Mm]ultiple namespaces"):
        module.loss_grad(params, array_api_strict.asarray(x), torch.asarray(y))


@pytest.mark.parametrize("namespace", sorted(NAMESPACES))
def test_a_batch_of_the_wrong_shape_is_refused_on_every_namespace(namespace: str) -> None:
    _, module, _ = _compiled("moons")
    convert, _ = NAMESPACES[namespace]
    x, y = convert(np.zeros((4, 2))), convert(np.zeros(3))
    with pytest.raises(ValueError, match=r"one value of shape \(\) per example of the batch"):
        module.loss_grad(module.init_params(0), x, y)
    with pytest.raises(ValueError, match=r"one value of shape \(2,\) per example"):
        module.loss_grad(module.init_params(0), convert(np.zeros((4, 3))), convert(np.zeros(4)))


def test_numpy_arrays_never_reach_the_twins() -> None:
    """numpy arrays, lists and numbers run numpy's own code (in a fresh process, which never
    imports array_api_compat); the twins hold no numpy call and nothing written in place."""
    script = """if True:
        import sys
        import numpy as np
        from exprgrad.api import program_of
        from exprgrad.emit.arrays import generate_numpy
        from exprgrad.emit.load import module_from_code
        m = module_from_code(generate_numpy(program_of("examples/moons.exg")), "m", "<m>")
        x = np.zeros((3, 2)); y = np.ones(3)
        v, g = m.loss_grad(np.asarray(m.init_params(0)), x, y)
        v2, g2 = m.loss_grad(m.init_params(0), x.tolist(), [1.0, 1.0, 1.0])
        assert type(g) is type(g2) is np.ndarray and (g == g2).all()
        print("array_api_compat" in sys.modules)
    """
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    for name in PROGRAMS:
        _, module, code = _compiled(name)
        defs = {f.name: f for f in ast.parse(code).body if isinstance(f, ast.FunctionDef)}
        entries = {n for kinds in module.ENTRY_POINTS.values() for n in kinds.values()}
        twins = [f for n, f in defs.items() if n.endswith("_xp")]
        assert len(twins) == len(entries), name
        for n in entries:  # each starts by handing other libraries' arrays to its twin
            hand_over = defs[n].body[1]
            assert isinstance(hand_over, ast.If), (name, n)
            assert f"return _{n}_xp(" in ast.unparse(hand_over), (name, n)
        for f in twins:
            text = ast.unparse(f)
            assert "np." not in text, (name, f.name)
            calls = {n.func.attr for n in ast.walk(f) if isinstance(n, ast.Call)
                     and isinstance(n.func, ast.Attribute)}
            assert calls <= verify._XP_ATTRS | {"T", "shape"}, (name, calls)


def test_every_array_api_call_is_in_the_2023_standard() -> None:
    """The allowlist of ``xp.`` names (derived from the op table and the backend's own) holds
    only functions, dtypes and constants of the array API standard 2023.12, as array-api-strict
    has them with that version (it leaves out later additions)."""
    missing = sorted(n for n in verify._XP_ATTRS if not hasattr(array_api_strict, n))
    assert not missing
    # and the op table's numpy names that the standard spells differently are renamed
    assert {"atan", "asin", "acos", "atan2", "pow", "astype", "permute_dims", "vecdot"} <= \
        verify._XP_ATTRS
    assert not {"arctan", "power", "swapaxes", "dot", "ascontiguousarray", "divide"} & \
        verify._XP_ATTRS


def test_the_allowlist_checks_the_array_api_code() -> None:
    code = _compiled("moons")[2]
    verify_module(code)
    start = re.search(r"\n    xp, (_dev\w*) = _namespace\((.*)\)\n", code)
    hand_over = re.search(r"\n    if not \((.*)\) and _foreign\((.*)\):\n"
                          r"        return (_\w+_xp)\((.*)\)\n", code)
    tanh = re.search(r"\n    (_t\d+) = xp\.tanh\((_t\d+)\)\n", code)
    asarray = re.search(r"\n    (_x\w*) = xp\.asarray\(x, dtype=xp\.float64, device=(_dev\w*)\)\n",
                        code)
    assert start and hand_over and tanh and asarray
    first = start.group(0)
    attacks = [
        code.replace(first, "\n    xp, _dev = __import__('os'), 0\n"),
        code.replace(first, f"\n    xp, {start.group(1)} = _foreign({start.group(2)})\n"),
        code.replace(first, first + "    xp = np\n"),
        code.replace(first, first + "    np = xp\n"),
        code.replace(tanh.group(0), f"\n    {tanh.group(1)} = xp.linalg\n"),
        code.replace(tanh.group(0), f"\n    {tanh.group(1)} = xp.from_dlpack({tanh.group(2)})\n"),
        code.replace(tanh.group(0), f"\n    {tanh.group(1)} = xp.tanh({tanh.group(2)}, "
                                    "out=params)\n"),
        code.replace(tanh.group(0), f"\n    {tanh.group(1)} = np.tanh({tanh.group(2)}, "
                                    "dtype=None)\n"),
        code.replace(asarray.group(0), asarray.group(0).replace("device=", "copy=")),
        code.replace(hand_over.group(0), hand_over.group(0).replace(
            f"return {hand_over.group(3)}(", "return print(")),
        code.replace(hand_over.group(0), hand_over.group(0).replace(
            f"({hand_over.group(4)})\n", f"({hand_over.group(4)}, x)\n")),
        code.replace(hand_over.group(0), hand_over.group(0) + "    else:\n        pass\n"),
        code.replace(hand_over.group(0), hand_over.group(0).replace(
            "and _foreign(", "and open(")),
        code.replace("def loss_grad(params, x, y):", "def loss_grad(params, x, xp):"),
    ]
    for attack in attacks:
        assert attack != code
        with pytest.raises(UnsafeCodeError):
            verify_module(attack)
    scalar = exprgrad.compile_source("param w = 0.5\ndef loss(x, y):\n"
                                     "    return (w * x - y) ** 2\n")
    loop = re.search(r"\n    for (\w+), (\w+) in zip\(", scalar)
    assert loop is not None
    with pytest.raises(UnsafeCodeError):  # the namespace's name is bound by _namespace only
        verify_module(scalar.replace(loop.group(0), f"\n    for xp, {loop.group(2)} in zip("))


def test_user_names_never_take_the_namespace_s_name() -> None:
    """A def and an argument called xp (the twins' namespace) are renamed, on both paths."""
    source = "param w = 0.5\ndef xp(xp, dev):\n    return (w * xp - dev) ** 2 * w\n"
    module = exprgrad.load_source(source, "names.exg", backend="numpy")
    assert module.ENTRY_POINTS["xp"]["value"] != "xp"
    grad = exprgrad.entry_point(module, "xp", "grad")
    x, y = np.array([1.0, 2.0, -1.0]), np.array([0.5, 3.0, 0.0])
    values, g = grad([0.75], x, y)
    np.testing.assert_allclose(values, (0.75 * x - y) ** 2 * 0.75, rtol=1e-15)
    expected = np.sum((0.75 * x - y) ** 2 + 2 * (0.75 * x - y) * x * 0.75)
    np.testing.assert_allclose(g, [expected], rtol=1e-14)
    t_values, t_g = grad([0.75], torch.asarray(x), torch.asarray(y))
    np.testing.assert_allclose(t_values.numpy(), values, rtol=1e-14)
    np.testing.assert_allclose(t_g.numpy(), g, rtol=1e-14)


# ---- training through PyTorch ------------------------------------------------------------------


@pytest.mark.parametrize("settings", [
    {"steps": 40},  # moons' own: adam, mean, the whole batch
    {"steps": 30, "optimizer": "sgd", "lr": 0.1, "batch_size": 16, "seed": 3},
    {"steps": 30, "optimizer": "momentum", "reduce": "sum", "lr": 0.002, "batch_size": 33},
])
def test_training_on_torch_tensors_follows_numpy_step_for_step(settings: dict[str, Any]) -> None:
    path = str(EXAMPLES / "moons.exg")
    on_numpy = exprgrad.train(path, progress=False, backend="numpy", **settings)
    on_torch = exprgrad.train(path, progress=False, device="torch-cpu", **settings)
    assert on_numpy.backend == on_torch.backend == "numpy"
    assert (on_numpy.device, on_torch.device) == ("cpu", "torch-cpu")
    assert len(on_torch.losses) == settings["steps"] and not on_torch.stopped
    np.testing.assert_allclose(on_torch.losses, on_numpy.losses, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(on_torch.params, on_numpy.params, rtol=1e-10, atol=1e-12)
    assert on_numpy.losses[-1] < on_numpy.losses[0] / 2  # (it learns: the numbers mean a run)
    assert "on torch-cpu" in repr(on_torch)


def test_training_a_loss_of_no_arguments_and_float32_on_torch() -> None:
    source = ("param a = 2.0\nparam b[2] = [1.0, -1.0]\n"
              "def loss():\n    return (a - 3) ** 2 + sum((b - 0.5) ** 2) + a * b[0]\n"
              "train loss(): optimizer=adam, lr=0.1, steps=25\n")
    program = compile_program(source, "noargs.exg")
    on_numpy = exprgrad.train(program, progress=False)
    on_torch = exprgrad.train(program, progress=False, device="torch-cpu")
    np.testing.assert_allclose(on_torch.losses, on_numpy.losses, rtol=1e-12)
    np.testing.assert_allclose(on_torch.params, on_numpy.params, rtol=1e-12)
    path = str(EXAMPLES / "moons.exg")
    f32 = exprgrad.train(path, progress=False, steps=20, dtype="float32", device="torch-cpu")
    ref = exprgrad.train(path, progress=False, steps=20)
    assert f32.dtype == "float32"
    np.testing.assert_allclose(f32.losses, ref.losses, rtol=1e-4)


def test_the_cli_trains_on_torch_cpu_as_on_numpy(tmp_path: Any) -> None:
    runs = {}
    for device in ("cpu", "torch-cpu"):
        out = tmp_path / f"{device}.json"
        result = run_cli("train", "examples/moons.exg", "--steps", "25", "--json", "--device",
                         device, "--save", str(out))
        assert result.returncode == 0, result.stderr
        runs[device] = (json.loads(result.stdout), json.loads(out.read_text()))
    (cpu, cpu_saved), (tc, tc_saved) = runs["cpu"], runs["torch-cpu"]
    assert (cpu["device"], tc["device"]) == ("cpu", "torch-cpu")
    assert tc["final_loss"] == pytest.approx(cpu["final_loss"], rel=1e-11)
    assert tc["accuracy"] == cpu["accuracy"]
    assert tc_saved["params"].keys() == cpu_saved["params"].keys()
    for k, v in cpu_saved["params"].items():
        assert tc_saved["params"][k] == pytest.approx(v, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("device, message", [
    ("cuda", "device cuda: no CUDA device is present"),
    ("cuda:1", "device cuda:1: no CUDA device is present"),
    ("mps", "device mps: no MPS device is present"),
    ("gpu", "no device 'gpu'"),
])
def test_a_device_that_is_not_here_is_a_clear_error(device: str, message: str) -> None:
    """This machine has no GPU: the run stops before training, with the file, the reason and a
    hint, exit 2, no traceback."""
    assert not torch.cuda.is_available()
    result = run_cli("train", "examples/moons.exg", "--device", device)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"examples/moons.exg: error: {message}" or \
        lines[0].startswith(f"examples/moons.exg: error: {message} (")
    assert lines[1].startswith("hint: ") and "Traceback" not in result.stderr
    assert "--device cpu" in lines[1] or "devices: cpu" in lines[1]
    assert result.stdout == ""
    with pytest.raises(ExprgradValueError, match=re.escape(message)):
        exprgrad.train(str(EXAMPLES / "moons.exg"), progress=False, device=device)


def test_without_pytorch_a_device_says_how_to_install_it() -> None:
    script = ("import sys; sys.modules['torch'] = None\n"
              "from exprgrad.ui.cli import main\n"
              "sys.exit(main(['train', 'examples/moons.exg', '--device', 'cuda']))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "examples/moons.exg: error: device cuda trains through PyTorch, which is not installed",
        "hint: install PyTorch (pip install torch; a CUDA build for an NVIDIA GPU: "
        "https://pytorch.org/get-started), or train on numpy: --device cpu"]


def test_chunked_training_refuses_a_device() -> None:
    """Chunked training computes each block on numpy (on Dask's workers): a device there is an
    error, not ignored."""
    result = run_cli("train", "examples/moons.exg", "--data", "examples/data/moons.csv",
                     "--chunked", "--device", "torch-cpu", "--steps", "2")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[0] == (
        "examples/moons.exg: error: chunked training computes on numpy arrays; device "
        "torch-cpu is for training in memory"), result.stderr


def test_a_device_is_a_run_setting_not_a_train_statement_option() -> None:
    source = ("param w = 0.5\ndef loss(x, y):\n    return (w * x - y) ** 2\n"
              "data xs = [1.0, 2.0]\ndata ys = [2.0, 4.0]\n"
              "train loss(xs, ys): steps=3, device=cuda\n")
    with pytest.raises(ExprgradValueError, match="unknown training option 'device'"):
        exprgrad.train(compile_program(source, "dev.exg"), progress=False)
    with pytest.raises(ExprgradValueError, match="python backend computes with Python floats"):
        exprgrad.train(str(EXAMPLES / "seed_mlp.exg"), progress=False, backend="python",
                       device="torch-cpu")


def test_adams_t_as_a_tensor_is_a_number() -> None:
    """t given as a 0-d integer tensor (or np.int64) computes beta ** t in float64, as a Python
    int does: the step equals numpy's with t = 1 to 1e-12 (it was float32, 7e-8 off)."""
    import torch

    mod = exprgrad.load(EXAMPLES / "moons.exg", backend="numpy")
    rng = np.random.default_rng(3)
    p = np.array(mod.init_params(0))
    z = np.zeros_like(p)
    x, y = rng.uniform(-1, 1, (5, 2)), np.sign(rng.uniform(-1, 1, 5))
    ref = mod.loss_step_adam(p, z, z, 1, x, y, 0.01, 0.9, 0.999, 1e-8, 1 / 6)
    t = torch.tensor
    for step in (torch.tensor(1), np.int64(1)):
        got = mod.loss_step_adam(t(p), t(z), t(z), step, t(x), t(y), 0.01, 0.9, 0.999, 1e-8,
                                 1 / 6)
        for a, b in zip(ref[1:], got[1:]):
            assert np.allclose(np.asarray(b), a, rtol=1e-12, atol=1e-15)
