"""Pictures with matplotlib: the loss curve of a training run, and a function with its derivatives.

Contract:
- matplotlib is imported here, only when a picture is drawn (never by the compiler, the generated
  modules or ``import exprgrad``), through its object API (``Figure``; no pyplot state, no
  display needed). Without it, drawing is a clear :class:`ExprgradValueError` naming the extra to
  install (``exprgrad[plot]``).
- :func:`loss_figure` draws a loss curve: labelled axes, tick numbers, a title, the final loss,
  and a log scale when the finite losses are positive and span more than two decades.
- :func:`function_figure` draws a scalar function and every partial derivative along one ranged
  argument (two panels), or, with two ranged arguments, the function as filled contours with its
  gradient field as arrows (quiver). Values come from the generated value-and-gradient code.
- :func:`save_figure` writes ``.png``, ``.svg`` or ``.pdf`` atomically with exprgrad's mark
  (PNG metadata, an SVG comment, a PDF trailer comment), so that a later run may replace the
  file and nothing else (see :mod:`exprgrad.run.files`).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..emit.build import module_of
from ..emit.load import entry_point
from ..emit.module import initial_params
from ..errors import ExprgradTypeError, ExprgradValueError
from ..lower.lowering import did_you_mean, program_of
from ..readers import number, parse_value
from ..run.evaluate import check_value
from ..run.files import check_output, write_output
from ..run.losscurve import figure_bytes, loss_figure
from ..run.losscurve import figure_class as matplotlib_figure
from ..run.paramsio import load_params

#: the formats pictures are written in
PLOT_SUFFIXES = (".png", ".svg", ".pdf")
#: the most points along a ranged argument (per axis for a contour)
MAX_POINTS = 2000
#: the hint of a scalar limit when plotting: the plot calls the scalar backend's code
_HINT = "plot a smaller program: 'exprgrad plot' runs the scalar backend's code"


def save_figure(fig: Any, path: str | Path, *, mark: str, force: bool = False) -> None:
    """Write a Figure to ``path`` (.png, .svg or .pdf) with exprgrad's ``mark``, atomically."""
    target = check_output(path, force=force, suffixes=PLOT_SUFFIXES)
    write_output(target, figure_bytes(fig, target.suffix.lower().lstrip("."), mark), force=force)


def save_loss_curve(losses: Sequence[float], path: str | Path, *, title: str = "training loss",
                    force: bool = False) -> None:
    try:
        save_figure(loss_figure(losses, title), path, mark="exprgrad loss curve", force=force)
    except OverflowError:  # a log scale over hundreds of decades: a linear one instead
        save_figure(loss_figure(losses, title, log=False), path, mark="exprgrad loss curve",
                    force=force)


# ---- a function and its derivatives ----------------------------------------------------------

def parse_ranges(items: Sequence[str], arg_names: Sequence[str], shapes: Sequence[tuple[int, ...]]
                 ) -> tuple[dict[str, tuple[float, float]], dict[str, Any]]:
    """``NAME=LO:HI`` (a ranged scalar argument) and ``NAME=VALUE`` (a fixed one)."""
    ranges: dict[str, tuple[float, float]] = {}
    fixed: dict[str, Any] = {}
    for item in items:
        name, eq, text = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise ExprgradValueError(f"{item!r} is not NAME=LO:HI or NAME=VALUE",
                                     hint="e.g. x=-5:5 y=2")
        if name not in arg_names:
            raise ExprgradValueError(f"the function has no argument {name!r}",
                                     hint=did_you_mean(name, list(arg_names)) or
                                     "arguments: " + ", ".join(arg_names))
        if name in ranges or name in fixed:
            raise ExprgradValueError(f"{name!r} is given twice")
        shape = shapes[list(arg_names).index(name)]
        if ":" in text:
            if shape != ():
                raise ExprgradTypeError(f"only a scalar argument can have a range; {name!r} "
                                        f"has shape {list(shape)}")
            lo_text, _, hi_text = text.partition(":")
            lo, hi = number(lo_text), number(hi_text)
            if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)
                                                and lo < hi and math.isfinite(hi - lo)):
                raise ExprgradValueError(f"the range of {name!r} must be two finite numbers, low "
                                         "below high, their difference a float too (got "
                                         f"{text!r})", hint="e.g. x=-5:5")
            ranges[name] = (lo, hi)
        else:
            fixed[name] = check_value(name, parse_value(name, text), shape)
    missing = [a for a in arg_names if a not in ranges and a not in fixed]
    if missing:
        raise ExprgradValueError(f"no value for {', '.join(repr(m) for m in missing)}",
                                 hint="give every argument: a range NAME=LO:HI or NAME=VALUE")
    if not 1 <= len(ranges) <= 2:
        raise ExprgradValueError(f"give one ranged argument (a curve) or two (a contour), not "
                                 f"{len(ranges)}", hint="e.g. x=-5:5, or x=-2:2 y=-2:2")
    return ranges, fixed


def function_figure(program: Any, fname: str, ranges: dict[str, tuple[float, float]],
                    fixed: dict[str, Any], *, points: int = 0,
                    params: Sequence[float] | None = None) -> Any:
    """A Figure of ``fname`` over its ranged arguments (see the module docstring)."""
    fn = program.functions[fname]
    if len(fn.outputs) != 1 or fn.outputs[0].shape != ():
        raise ExprgradTypeError(f"'{fname}' must return one scalar to be plotted", fn.span
                                ).with_source(program.filename, program.source)
    module = module_of(program, [fn], ("grad",), hint=_HINT)
    grad_of = entry_point(module, fname, "grad")
    if params is not None and (isinstance(params, (str, bytes)) or not all(
            isinstance(p, (int, float)) and not isinstance(p, bool) for p in params)
            or len(params) != len(program.param_order)):
        raise ExprgradValueError(f"params must be a list of {len(program.param_order)} numbers "
                                 "(or a file saved by `exprgrad train --save`)")
    if fn.uses_params:
        theta = list(params) if params is not None else initial_params(program, 0)

        def call(args: list[Any]) -> tuple[float, list[Any]]:
            value, _ = grad_of(theta, *args)
            return value, []
    else:
        def call(args: list[Any]) -> tuple[float, list[Any]]:
            value, grads = grad_of(*args)
            return value, list(grads)
    names = list(fn.arg_names)
    ranged = [n for n in names if n in ranges]
    if points != 0 and not 2 <= points <= MAX_POINTS:
        raise ExprgradValueError(f"--points is from 2 to {MAX_POINTS} (0: the default)")
    figure_class = matplotlib_figure()
    if len(ranged) == 1:
        return _curves(figure_class, fname, names, ranged[0], ranges, fixed, call,
                       points or 401, fn.uses_params)
    return _contour(figure_class, fname, names, ranged, ranges, fixed, call, points or 61,
                    fn.uses_params)


def _grid(lo: float, hi: float, n: int) -> list[float]:
    """n points from lo to hi (never overflowing: -1e308:1e308 works)."""
    return [lo * (1 - i / (n - 1)) + hi * (i / (n - 1)) for i in range(n)]


def _safe(call: Callable[[list[Any]], tuple[float, list[Any]]], args: list[Any]
          ) -> tuple[float, list[Any]]:
    try:
        return call(args)
    except (ArithmeticError, ValueError):  # a point outside the domain: a gap in the curve
        return math.nan, []


def _curves(figure_class: Any, fname: str, names: list[str], x: str,
            ranges: dict[str, tuple[float, float]], fixed: dict[str, Any],
            call: Callable[[list[Any]], tuple[float, list[Any]]], n: int,
            uses_params: bool) -> Any:
    xs = _grid(*ranges[x], n)
    values: list[float] = []
    partials: dict[str, list[float]] = {a: [] for a in names
                                        if a == x or not isinstance(fixed.get(a), list)}
    for point in xs:
        args = [point if a == x else fixed[a] for a in names]
        value, grads = _safe(call, args)
        values.append(value)
        for a, g in zip(names, grads or [math.nan] * len(names)):
            if a in partials:
                partials[a].append(float(g) if not isinstance(g, list) else math.nan)
    fig = figure_class(figsize=(7, 6), dpi=100, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    shown = ", ".join(f"{a}={fixed[a]}" for a in names if a != x)
    top.plot(xs, values, color="#1f5fa8", linewidth=1.8, label=f"{fname}")
    top.set_ylabel(f"{fname}({', '.join(names)})")
    top.set_title(f"{fname} over {x} in [{ranges[x][0]:g}, {ranges[x][1]:g}]"
                  + (f" at {shown}" if shown else ""))
    top.grid(True, alpha=0.3)
    top.legend(loc="best")
    if math.isfinite(ranges[x][1] - ranges[x][0]):
        top.set_xlim(*ranges[x])  # the range asked for, even where the function is undefined
    if not any(math.isfinite(v) for v in values):
        top.text(0.5, 0.5, f"no finite value of {fname} in this range", ha="center",
                 va="center", transform=top.transAxes)
    if uses_params:
        bottom.text(0.5, 0.5, f"{fname} uses parameters: its gradient is with respect to them",
                    ha="center", va="center", transform=bottom.transAxes)
    for a, series in partials.items():
        style = {"linewidth": 1.8} if a == x else {"linewidth": 1.2, "linestyle": "--"}
        bottom.plot(xs, series, label=f"d{fname}/d{a}", **style)
    bottom.axhline(0.0, color="#888888", linewidth=0.8)
    bottom.set_xlabel(x)
    bottom.set_ylabel("derivative")
    bottom.grid(True, alpha=0.3)
    if partials and not uses_params:
        bottom.legend(loc="best")
    return fig


def _contour(figure_class: Any, fname: str, names: list[str], ranged: list[str],
             ranges: dict[str, tuple[float, float]], fixed: dict[str, Any],
             call: Callable[[list[Any]], tuple[float, list[Any]]], n: int,
             uses_params: bool) -> Any:
    x, y = ranged
    xs, ys = _grid(*ranges[x], n), _grid(*ranges[y], n)
    z = [[math.nan] * n for _ in range(n)]
    gx = [[math.nan] * n for _ in range(n)]
    gy = [[math.nan] * n for _ in range(n)]
    ix, iy = names.index(x), names.index(y)
    for j, yv in enumerate(ys):
        for i, xv in enumerate(xs):
            args = [xv if a == x else yv if a == y else fixed[a] for a in names]
            value, grads = _safe(call, args)
            z[j][i] = value
            if grads:
                gx[j][i], gy[j][i] = float(grads[ix]), float(grads[iy])
    fig = figure_class(figsize=(7, 6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    filled = ax.contourf(xs, ys, z, levels=20, cmap="viridis")
    ax.contour(xs, ys, z, levels=20, colors="white", linewidths=0.4, alpha=0.6)
    fig.colorbar(filled, ax=ax, label=f"{fname}")
    if uses_params:
        ax.text(0.02, 0.02, f"{fname} uses parameters: its gradient is with respect to them",
                transform=ax.transAxes, fontsize=8)
    else:
        step = max(1, n // 15)
        ax.quiver(xs[::step], ys[::step], [row[::step] for row in gx[::step]],
                  [row[::step] for row in gy[::step]], color="#ffffff", alpha=0.8)
    others = ", ".join(f"{a}={fixed[a]}" for a in names if a not in ranged)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{fname} over ({x}, {y})" + (f" at {others}" if others else "")
                 + ("" if uses_params else "; arrows: its gradient"))
    return fig


def plot_cli(args: argparse.Namespace) -> int:
    """``exprgrad plot F.exg FUNC NAME=LO:HI [NAME=VALUE ...] -o OUT``."""
    check_output(args.output, force=args.force, suffixes=PLOT_SUFFIXES)  # before any work
    program = program_of(args.file)
    if args.function not in program.functions:
        raise ExprgradValueError(f"no function '{args.function}' in {args.file}",
                                 hint=did_you_mean(args.function, list(program.functions))
                                 or "functions: " + ", ".join(program.functions))
    fn = program.functions[args.function]
    ranges, fixed = parse_ranges(args.values, fn.arg_names, fn.arg_shapes)
    params = load_params(args.params, program) if args.params else None
    fig = function_figure(program, args.function, ranges, fixed, points=args.points,
                          params=params)
    save_figure(fig, args.output, mark="exprgrad function plot", force=args.force)
    print(f"wrote {args.output}")
    return 0
