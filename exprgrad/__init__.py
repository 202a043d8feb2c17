"""exprgrad: compile formulas and small neural networks into straight-line gradient code.

The public API (``__all__``): compile (:func:`compile_source`, :func:`compile_file`), load
(:func:`load`, :func:`load_source`, :func:`entry_point`, :func:`install`), :func:`check`,
:func:`train`, :func:`predict`, :func:`draw` and :func:`plot`. See README.md.
"""

from __future__ import annotations

from .api import compile_file, compile_source, load, load_source
from .emit.load import entry_point
from .errors import ExprgradError  # noqa: E402
from .ui.importer import install, uninstall  # noqa: E402
from .version import __version__


def train(source, *, progress=None, **settings):  # type: ignore[no-untyped-def]
    """Train a program (a .exg path, or a Program) as its 'train' statement says; keyword
    arguments override the settings (steps, lr, optimizer, seed, batch_size, reduce, backend,
    dtype: "float32" trains in float32 on the numpy backend; device: "cpu" (numpy, the default),
    or "torch-cpu", "cuda", "cuda:N", "mps" to train through PyTorch tensors there).
    Returns a TrainResult: ``.losses`` (one per step), ``.params`` and ``.names``. ``progress``:
    a progress bar (default: in Jupyter and on a terminal); Ctrl-C ends training after the last
    whole step, and the result says so (``.stopped``)."""
    from .api import program_of
    from .ir.program import Program
    from .run.config import settings_of
    from .run.progress import Progress
    from .run.training import train as run

    program = source if isinstance(source, Program) else program_of(source)
    try:
        config = settings_of(program, settings)
    except ExprgradError as err:  # located in the file, with its caret
        raise err.with_source(program.filename, program.source) from None
    bar = Progress.automatic(config.steps, None if progress is None else bool(progress))
    return run(program, config=config, progress=bar, interruptible=True)


def draw(source, function=None, *, at=None, backward=False, collapse=False, params=None):  # type: ignore[no-untyped-def]
    """A graphviz.Digraph of a function of a .exg file (renders inline in Jupyter); ``at``
    maps argument names to values to show each node's value and gradient; ``params`` (a flat
    list such as ``train(...).params``, or a file saved by ``exprgrad train --save``) gives a
    network's parameters."""
    from .ui.drawing import draw as make

    return make(source, function, at=at, backward=backward, collapse=collapse, params=params)


def check(source, *functions, budget=60.0, seed=0, hessian=False, dtype="float64"):  # type: ignore[no-untyped-def]
    """Check every gradient of a program (a .exg path, or a Program) against sympy and central
    differences; returns a Report (``.ok``, ``.lines``, ``.unchecked``). ``dtype="float32"``
    also checks the float32 numpy module's gradients (lines of method ``float32``)."""
    from .api import program_of
    from .ir.program import Program
    from .ui.check_cmd import check_program

    program = source if isinstance(source, Program) else program_of(source)
    names = [f for item in functions for f in ([item] if isinstance(item, str) else item)]
    return check_program(program, names, budget=budget, seed=seed, hessian=hessian,
                         dtype=dtype)


def predict(source, params, inputs=None):  # type: ignore[no-untyped-def]
    """Predictions of trained parameters (a flat list, e.g. ``TrainResult.params``) for
    ``inputs`` (a list of argument lists; default: the program's training data)."""
    from .api import program_of
    from .ir.program import Program
    from .ui.train_cmd import predict_values

    program = source if isinstance(source, Program) else program_of(source)
    return predict_values(program, _params(program, params), inputs)


def _params(program, params):  # type: ignore[no-untyped-def]
    """Parameters given as a flat list of numbers or as the path of a saved file."""
    import os

    from .errors import ExprgradValueError
    from .run.paramsio import load_params

    if isinstance(params, (str, os.PathLike)):
        return load_params(str(params), program)
    if isinstance(params, dict) or not all(isinstance(p, (int, float)) and not isinstance(
            p, bool) for p in params) or len(params) != len(program.param_order):
        raise ExprgradValueError(f"params must be a list of {len(program.param_order)} numbers "
                                 "or the path of a file saved by `exprgrad train --save`")
    return [float(p) for p in params]


def plot(source, function=None, output=None, *, points=0, params=None, **values):  # type: ignore[no-untyped-def]
    """A matplotlib Figure (shown inline in Jupyter): with ``function``, that def over one
    ranged argument (``x=(-5, 5)``: the function and its partial derivatives) or two (a
    contour), the others fixed (``b=0.5``); with a TrainResult as ``source``, its loss curve.
    ``output`` (.png, .svg, .pdf) also writes it."""
    import functools

    from .api import program_of
    from .ir.program import Program
    from .run.config import TrainResult
    from .run.losscurve import figure_bytes
    from .ui.plot import function_figure, loss_figure, parse_ranges, save_figure

    if isinstance(source, TrainResult):
        fig, mark = loss_figure(source.losses), "exprgrad loss curve"
    else:
        program = source if isinstance(source, Program) else program_of(source)
        fn = program.functions[function] if function in program.functions else None
        if fn is None:
            raise ExprgradError((f"no function {function!r}" if function else
                                 "plot needs the name of a function (or a TrainResult)")
                                + "; functions: " + ", ".join(program.functions))
        for k, v in values.items():
            if isinstance(v, tuple) and len(v) != 2:
                raise ExprgradError(f"the range of {k!r} is (low, high), got {v!r}")
        if isinstance(points, bool) or not isinstance(points, int):
            raise ExprgradError(f"points is a whole number, got {points!r}")
        texts = [f"{k}={v[0]!r}:{v[1]!r}" if isinstance(v, tuple) else f"{k}={v}"
                 for k, v in values.items()]
        ranges, fixed = parse_ranges(texts, fn.arg_names, fn.arg_shapes)
        theta = None if params is None else _params(program, params)
        fig = function_figure(program, function, ranges, fixed, points=points, params=theta)
        mark = "exprgrad function plot"
    if output is not None:
        save_figure(fig, output, mark=mark)
    # shown inline in Jupyter without %matplotlib: the figure renders itself as PNG
    fig._repr_png_ = functools.partial(figure_bytes, fig, "png", mark)
    return fig


__all__ = ["ExprgradError", "__version__", "check", "compile_file", "compile_source", "draw",
           "entry_point", "install", "load", "load_source", "plot", "predict", "train",
           "uninstall"]


def load_ipython_extension(ipython):  # type: ignore[no-untyped-def]
    """``%load_ext exprgrad``: registers the ``%%exprgrad`` cell magic (exprgrad.ui.jupyter)."""
    try:
        import IPython  # noqa: F401
    except ImportError:
        raise ImportError("exprgrad's Jupyter support needs IPython: "
                          "pip install 'exprgrad[jupyter]'") from None
    from .ui.jupyter import load_ipython_extension as load

    load(ipython)
