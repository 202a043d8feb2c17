"""Generated ``f_vjp`` (both backends) against central differences of ``sum(dout * f)``, and
parameters by tensor name (``params_by_name`` / ``params_from_names``)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

import exprgrad
from exprgrad.errors import ExprgradNameError

SOURCE = """\
param s = 0.5
net n = MLP(3, [4, 2], out=linear)

def two(x, y[2]):
    return x * y[0] + sin(y[1]) * x, exp(-x * x) * y

def mat(m[2, 3], v[3]):
    return tanh(m @ v) * 2

def net_out(x[3]):
    return n(x) * s

def ruled(a, b):
    grad a = dout * b * cos(a * b)
    grad b = dout * a * cos(a * b)
    return sin(a * b)
"""


@pytest.fixture(scope="module")
def modules() -> tuple[Any, Any]:
    scalar = exprgrad.load_source(SOURCE, "vjp.exg")
    numpy_mod = exprgrad.load_source(SOURCE, "vjp.exg", backend="numpy")
    return scalar, numpy_mod


def _flat(value: Any) -> list[float]:
    if isinstance(value, (list, tuple, np.ndarray)):
        return [x for v in value for x in _flat(v)]
    return [float(value)]


def _shape_like(flat: list[float], like: Any) -> Any:
    if isinstance(like, (list, tuple)):
        out, i = [], 0
        for item in like:
            n = len(_flat(item))
            out.append(_shape_like(flat[i:i + n], item))
            i += n
        return out
    return flat[0]


def _fd(f: Any, args: list[Any], douts: list[Any], which: int, h: float = 1e-6) -> list[float]:
    """d/d(args[which]) of sum_k dout_k . out_k, by central differences."""
    base = _flat(args[which])
    grads = []
    for i in range(len(base)):
        def at(delta: float, i: int = i) -> float:
            moved = list(base)
            moved[i] += delta
            new = list(args)
            new[which] = _shape_like(moved, args[which])
            outs = f(*new)
            outs = outs if isinstance(outs, tuple) else (outs,)
            return sum(float(np.dot(_flat(o), _flat(d))) for o, d in zip(outs, douts))
        grads.append((at(h) - at(-h)) / (2 * h))
    return grads


CASES = {
    "two": lambda r: ([r.uniform(-1, 1), [r.uniform(-1, 1), r.uniform(-1, 1)]],
                      [r.uniform(-1, 1), [r.uniform(-1, 1), r.uniform(-1, 1)]]),
    "mat": lambda r: ([[[r.uniform(-1, 1) for _ in range(3)] for _ in range(2)],
                       [r.uniform(-1, 1) for _ in range(3)]], [[r.uniform(-1, 1) for _ in
                                                                  range(2)]]),
    "ruled": lambda r: ([r.uniform(-1, 1), r.uniform(-1, 1)], [r.uniform(-1, 1)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("seed", range(3))
def test_vjp_of_arguments_matches_finite_differences(modules: tuple[Any, Any], name: str,
                                                     seed: int) -> None:
    scalar, numpy_mod = modules
    args, douts = CASES[name](random.Random(seed))
    f = exprgrad.entry_point(scalar, name, "value")
    vjp = exprgrad.entry_point(scalar, name, "vjp")
    value, cotangents = vjp(*args, *douts)
    assert _flat(value) == pytest.approx(_flat(f(*args)), rel=1e-12)
    for i in range(len(args)):
        assert _flat(cotangents[i]) == pytest.approx(_fd(f, args, douts, i), rel=1e-6, abs=1e-8)
    # the numpy backend: a batch of this example and a scaled copy of its cotangents
    batched = [np.asarray([a, a]) for a in args]
    bdouts = [np.asarray([d, np.multiply(d, 3.0)]) for d in douts]
    nvalue, ncot = exprgrad.entry_point(numpy_mod, name, "vjp")(*batched, *bdouts)
    for i in range(len(args)):
        assert _flat(ncot[i][0]) == pytest.approx(_flat(cotangents[i]), rel=1e-12, abs=1e-14)
        assert _flat(ncot[i][1]) == pytest.approx([3 * c for c in _flat(cotangents[i])],
                                                  rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("seed", range(3))
def test_vjp_of_parameters_and_input_matches_finite_differences(modules: tuple[Any, Any],
                                                                seed: int) -> None:
    scalar, numpy_mod = modules
    r = random.Random(seed)
    params = scalar.init_params(seed)
    x = [r.uniform(-2, 2) for _ in range(3)]
    dout = [r.uniform(-1, 1), r.uniform(-1, 1)]
    value, dparams, (dx,) = scalar.net_out_vjp(params, x, dout)
    assert value == pytest.approx(scalar.net_out(params, x), rel=1e-12)
    assert dparams == pytest.approx(_fd(scalar.net_out, [params, x], [dout], 0), rel=1e-6,
                                    abs=1e-8)
    assert dx == pytest.approx(_fd(scalar.net_out, [params, x], [dout], 1), rel=1e-6, abs=1e-8)
    # numpy: per-example values and input cotangents, the parameter cotangent summed
    nv, ndp, (ndx,) = numpy_mod.net_out_vjp(params, [x, x], [dout, dout])
    assert np.allclose(nv, [value, value], rtol=1e-12)
    assert np.allclose(ndp, 2 * np.asarray(dparams), rtol=1e-12, atol=1e-14)
    assert np.allclose(ndx, [dx, dx], rtol=1e-12, atol=1e-14)


def test_parameters_by_name_round_trip_and_refusals(modules: tuple[Any, Any]) -> None:
    scalar, numpy_mod = modules
    params = scalar.init_params(4)
    named = scalar.params_by_name(params)
    assert list(named) == ["s", "n.layers.0.w", "n.layers.0.b", "n.layers.1.w", "n.layers.1.b"]
    assert isinstance(named["s"], float)
    assert len(named["n.layers.0.w"]) == 4 and len(named["n.layers.0.w"][0]) == 3
    # element names say where each value sits: n.layers.0.neurons.1.w.2 is row 1, column 2
    flat_index = scalar.PARAM_NAMES.index("n.layers.0.neurons.1.w.2")
    assert named["n.layers.0.w"][1][2] == params[flat_index]
    assert named["n.layers.1.b"][1] == params[scalar.PARAM_NAMES.index("n.layers.1.neurons.1.b")]
    assert scalar.params_from_names(named) == params
    assert numpy_mod.params_from_names(numpy_mod.params_by_name(np.asarray(params))) == params
    with pytest.raises(KeyError, match="no parameter tensor 'zz'"):
        scalar.params_from_names({**named, "zz": 1.0})
    with pytest.raises(ValueError, match="n.layers.0.w needs 4 rows of 3 values"):
        scalar.params_from_names({**named, "n.layers.0.w": [[1.0, 2.0]]})
    with pytest.raises(ValueError, match="n.layers.0.b needs 4 values"):
        scalar.params_from_names({**named, "n.layers.0.b": [1.0]})
    for wrong in ([[1.0] * 3] * 4, 1.0, {"a": 1.0}):  # never TypeError: a ValueError naming it
        with pytest.raises(ValueError, match="n.layers.0.b (needs 4 values|holds numbers)"):
            scalar.params_from_names({**named, "n.layers.0.b": wrong})
    with pytest.raises(ValueError, match="n.layers.0.w holds numbers, not list values"):
        scalar.params_from_names({**named, "n.layers.0.w": [[[1.0]] * 3] * 4})
    with pytest.raises(ValueError, match="s needs a number"):
        scalar.params_from_names({**named, "s": [0.3]})
    with pytest.raises(ValueError, match=f"expected {len(params)} parameters, got"):
        scalar.params_by_name(params + [1.0])
    with pytest.raises(KeyError):
        scalar.params_from_names({"s": 1.0})


def test_generated_names_never_collide() -> None:
    mod = exprgrad.load_source("param w = 2\ndef params_by_name(x):\n    return x * w\n"
                               "def dout2(x):\n    return x + 1, x\n", "names.exg")
    assert mod.ENTRY_POINTS["params_by_name"]["value"] != "params_by_name"
    assert mod.params_by_name([3.0]) == {"w": 3.0}  # the helper is still the helper
    f = exprgrad.entry_point(mod, "params_by_name", "value")
    assert f([2.0], 5.0) == 10.0
    assert exprgrad.entry_point(mod, "dout2", "vjp")(1.0, 2.0, 3.0) == ((2.0, 1.0), (5.0,))
    with pytest.raises(ExprgradNameError, match="'f_vjp' is the name of the generated vjp"):
        exprgrad.compile_source("def f(x):\n    return x\ndef f_vjp(x):\n    return x\n")
