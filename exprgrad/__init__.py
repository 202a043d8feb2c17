"""exprgrad: compile formulas and small neural networks into straight-line gradient code.

The public API: :func:`compile_source`, :func:`compile_file`, :func:`load` (and, once imported
from their modules, training, checking and drawing helpers). See README.md.
"""

from __future__ import annotations

from .api import compile_file, compile_source, load, load_source
from .emit.load import entry_point
from .errors import ExprgradError  # noqa: E402
from .ui.importer import install, uninstall  # noqa: E402
from .version import __version__


def train(source, **settings):  # type: ignore[no-untyped-def]
    """Train a program (a .exg path, or a Program) as its 'train' statement says; keyword
    arguments override the settings (steps, lr, optimizer, seed, batch_size, reduce, backend).
    Returns a TrainResult: ``.losses`` (one per step), ``.params`` and ``.names``."""
    from .api import program_of
    from .ir.program import Program
    from .run.config import config_from_program
    from .run.training import train as run

    program = source if isinstance(source, Program) else program_of(source)
    config = config_from_program(program)
    for key, value in settings.items():
        if not hasattr(config, key):
            raise TypeError(f"unknown training setting {key!r}")
        setattr(config, key, value)
    return run(program, config=config)


def draw(source, function=None, *, at=None, backward=False, collapse=False, params=None):  # type: ignore[no-untyped-def]
    """A graphviz.Digraph of a function of a .exg file (renders inline in Jupyter); ``at``
    maps argument names to values to show each node's value and gradient; ``params`` (a flat
    list such as ``train(...).params``, or a file saved by ``exprgrad train --save``) gives a
    network's parameters."""
    from .ui.drawing import draw as make

    return make(source, function, at=at, backward=backward, collapse=collapse, params=params)


__all__ = ["ExprgradError", "__version__", "compile_file", "compile_source", "draw", "entry_point",
           "install",
           "load", "load_source", "train", "uninstall"]
