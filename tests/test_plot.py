"""`exprgrad plot`: a function and its derivatives through matplotlib, checked on the data the
figure holds (against the formula and central differences), on the files (real PNG, SVG text,
PDF) and on its refusals."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import run_cli

from exprgrad.errors import ExprgradError
from exprgrad.lower.lowering import compile_program
from exprgrad.ui.plot import function_figure, parse_ranges

SOURCE = """\
def g(a, b):
    return tanh(a) - relu(b) ** 3

def bowl(x, y):
    return x * x + 3 * y * y + sin(x * y)

def lg(x):
    return log(x)

def wsum(x, v[3]):
    return x * sum(v)

def two(x):
    return x, x * x
"""


def _g(a: float, b: float) -> float:
    return math.tanh(a) - max(b, 0.0) ** 3


def test_a_curve_holds_the_function_and_its_derivatives() -> None:
    program = compile_program(SOURCE, "p.exg")
    fn = program.functions["g"]
    ranges, fixed = parse_ranges(["a=-3:3", "b=0.5"], fn.arg_names, fn.arg_shapes)
    fig = function_figure(program, "g", ranges, fixed, points=61)
    top, bottom = fig.axes
    (line,) = top.get_lines()
    xs, ys = line.get_xdata(), line.get_ydata()
    assert len(xs) == 61 and xs[0] == -3 and xs[-1] == 3
    assert list(ys) == pytest.approx([_g(x, 0.5) for x in xs], rel=1e-12)
    curves = {ln.get_label(): ln.get_ydata() for ln in bottom.get_lines() if
              ln.get_label().startswith("d")}
    assert set(curves) == {"dg/da", "dg/db"}
    h = 1e-6
    assert list(curves["dg/da"]) == pytest.approx(
        [(_g(x + h, 0.5) - _g(x - h, 0.5)) / (2 * h) for x in xs], rel=1e-6, abs=1e-9)
    assert list(curves["dg/db"]) == pytest.approx([-3 * 0.25] * 61, rel=1e-9)
    assert top.get_title() == "g over a in [-3, 3] at b=0.5" and bottom.get_xlabel() == "a"


def test_a_contour_holds_the_function_on_its_grid() -> None:
    program = compile_program(SOURCE, "p.exg")
    fn = program.functions["bowl"]
    ranges, fixed = parse_ranges(["x=-2:2", "y=-1:1"], fn.arg_names, fn.arg_shapes)
    fig = function_figure(program, "bowl", ranges, fixed, points=21)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "y"
    quiver = next(c for c in ax.collections if type(c).__name__ == "Quiver")
    # the arrows are the gradient (2x + y cos(xy), 6y + x cos(xy)) at the grid points
    for (x, y), u, v in zip(quiver.XY, quiver.U, quiver.V):
        assert u == pytest.approx(2 * x + y * math.cos(x * y), rel=1e-9, abs=1e-12)
        assert v == pytest.approx(6 * y + x * math.cos(x * y), rel=1e-9, abs=1e-12)


def test_the_command_writes_real_files_and_leaves_gaps_outside_the_domain(tmp_path: Path
                                                                          ) -> None:
    (tmp_path / "p.exg").write_text(SOURCE)
    for out, args in (("g.png", ["g", "a=-3:3", "b=0.5"]), ("g.svg", ["g", "a=-3:3", "b=0.5"]),
                      ("bowl.pdf", ["bowl", "x=-2:2", "y=-1:1"]), ("lg.svg", ["lg", "x=-1:3"])):
        result = run_cli("plot", "p.exg", *args, "-o", out, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"wrote {out}\n"
    assert b"Software\x00exprgrad function plot" in (tmp_path / "g.png").read_bytes()[:4096]
    svg = (tmp_path / "g.svg").read_text()
    assert "<!-- exprgrad function plot -->" in svg
    for text in ("g over a in [-3, 3] at b=0.5", "dg/da", "dg/db", "derivative"):
        assert text in svg, text
    assert (tmp_path / "bowl.pdf").read_bytes().rstrip().endswith(b"%exprgrad function plot")
    again = run_cli("plot", "p.exg", "g", "a=-1:1", "b=0", "-o", "g.png", cwd=tmp_path)
    assert again.returncode == 0  # exprgrad may replace its own picture ...
    (tmp_path / "mine.png").write_bytes(b"\x89PNG\r\n\x1a\nnot exprgrad's")
    refused = run_cli("plot", "p.exg", "g", "a=-1:1", "b=0", "-o", "mine.png", cwd=tmp_path)
    assert refused.returncode == 2 and "refusing" in refused.stderr  # ... and nothing else


@pytest.mark.parametrize("args, message", [
    (["g", "a=-3:3"], "no value for 'b'"),
    (["g", "a=3:-3", "b=1"], "must be two finite numbers, low below high"),
    (["g", "a=-3:3", "b=1", "c=2"], "the function has no argument 'c'"),
    (["g", "a=1", "b=1"], "give one ranged argument (a curve) or two (a contour), not 0"),
    (["g", "a=-1:1", "a=2", "b=1"], "'a' is given twice"),
    (["nope", "a=-1:1"], "no function 'nope'"),
    (["g", "a=-1:1", "b=1", "--points", "99999"], "--points is from 2 to 2000"),
    (["g", "a=-1:1", "b=1", "--points", "1"], "--points is from 2 to 2000"),
    (["wsum", "x=-1:1", "v=1"], "'v' is a vector of 3 numbers; got 1.0"),
    (["wsum", "x=-1:1", "v=[1,2]"], "'v' is a vector of 3 numbers; got a list of 2"),
    (["two", "x=-1:1"], "p.exg:13:5: type error: 'two' must return one scalar"),
])
def test_refusals_are_clear(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "p.exg").write_text(SOURCE)
    result = run_cli("plot", "p.exg", *args, "-o", "x.png", cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_a_wrong_suffix_is_refused_before_any_work(tmp_path: Path) -> None:
    result = run_cli("plot", "missing.exg", "g", "a=-1:1", "-o", "x.jpg", cwd=tmp_path)
    assert result.returncode == 2 and "must end in .png, .svg or .pdf" in result.stderr
    with pytest.raises(ExprgradError, match="only a scalar argument can have a range"):
        parse_ranges(["v=0:1"], ["v"], [(3,)])
