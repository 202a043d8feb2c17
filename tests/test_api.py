"""The public API reads as one: exprgrad.__all__ names compile/load/check/train/predict/draw/plot,
and each does what the CLI does (checked against independent numbers)."""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

from conftest import EXAMPLES, ROOT

import exprgrad

sys.path.insert(0, str(ROOT / "benchmarks"))
from seed_engine import MLP  # noqa: E402

SEED = EXAMPLES / "seed_mlp.exg"
XS = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]


def test_all_names_the_public_functions() -> None:
    assert {"compile_source", "compile_file", "load", "check", "train", "predict", "draw",
            "plot", "entry_point"} <= set(exprgrad.__all__)
    assert all(callable(getattr(exprgrad, name)) for name in exprgrad.__all__
               if name not in ("__version__",))


def test_train_predict_and_a_short_repr() -> None:
    result = exprgrad.train(SEED, steps=30)
    text = repr(result)
    assert len(text) < 200 and text.startswith("TrainResult(30 steps, loss 7.72979 -> ")
    predictions = exprgrad.predict(SEED, result.params)
    net = MLP(3, [4, 4, 1])  # the seed's engine with the trained weights
    net.set_parameters(result.params)
    assert predictions == [pytest_approx(net(x).data) for x in XS]
    given = exprgrad.predict(SEED, result.params, [[x] for x in XS[:2]])
    assert given == predictions[:2]
    import pytest

    with pytest.raises(exprgrad.ExprgradError, match="input 0 must be a list of 1 argument"):
        exprgrad.predict(SEED, result.params, XS)  # one level of nesting short


def pytest_approx(value: float):  # type: ignore[no-untyped-def]
    import pytest

    return pytest.approx(value, rel=1e-12)


def test_check_returns_a_report() -> None:
    report = exprgrad.check(EXAMPLES / "tour.exg", "g", budget=20)
    assert report.ok and {line.partial for line in report.lines} >= {"a", "b"}
    assert repr(report).startswith("Report(ok: ") and len(repr(report)) < 100
    wrong = exprgrad.check(EXAMPLES / "seed_tanh.exg", budget=20)
    assert not wrong.ok  # the seed's tanh rule is wrong, and check says so


def test_plot_returns_a_figure_and_writes_it(tmp_path: Path) -> None:
    fig = exprgrad.plot(EXAMPLES / "tour.exg", "g", tmp_path / "g.png", a=(-1, 1), b=0.5,
                        points=11)
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_ydata()) == [math.tanh(-1 + 0.2 * i) - 0.125 for i in range(11)] or \
        max(abs(y - (math.tanh(-1 + 0.2 * i) - 0.125)) for i, y in enumerate(line.get_ydata())
            ) < 1e-12
    assert (tmp_path / "g.png").read_bytes().startswith(b"\x89PNG")
    random.seed(0)
    curve = exprgrad.plot(exprgrad.train(SEED, steps=5), output=tmp_path / "loss.svg")
    assert curve.axes[0].get_xlabel() == "step"
    assert "<!-- exprgrad loss curve -->" in (tmp_path / "loss.svg").read_text()


def test_plot_takes_saved_parameters_and_refuses_wrong_ones(tmp_path: Path) -> None:
    import json

    import pytest
    from conftest import run_cli

    assert run_cli("train", str(SEED), "--steps", "20", "--save", str(tmp_path / "p.json"),
                   "--quiet").returncode == 0
    net = exprgrad.load(EXAMPLES / "seed_net.exg")
    saved = json.loads((tmp_path / "p.json").read_text())["params"]
    flat = [saved[name] for name in net.PARAM_NAMES]
    program = exprgrad.api.compile_program(SEED.read_text() + "\ndef out(a):\n    return n([a, "
                                           "3.0, -1.0])\n", str(SEED))
    fig = exprgrad.plot(program, "out", a=(-1.0, 1.0), points=5, params=tmp_path / "p.json")
    ys = list(fig.axes[0].get_lines()[0].get_ydata())
    assert ys == pytest.approx([net.predict(flat, [a, 3.0, -1.0]) for a in
                                (-1.0, -0.5, 0.0, 0.5, 1.0)], rel=1e-12)
    with pytest.raises(exprgrad.ExprgradError, match="params must be a list of 41 numbers"):
        exprgrad.plot(program, "out", a=(-1.0, 1.0), params=[1.0, 2.0])
    huge = exprgrad.plot(EXAMPLES / "tour.exg", "g", a=(-1e307, 1e307), b=0.0, points=5)
    assert list(huge.axes[0].get_lines()[0].get_xdata()) == pytest.approx(
        [-1e307, -5e306, 0.0, 5e306, 1e307], rel=1e-15)
    with pytest.raises(exprgrad.ExprgradError, match="their difference a float too"):
        exprgrad.plot(EXAMPLES / "tour.exg", "g", a=(-1e308, 1e308), b=0.0)
