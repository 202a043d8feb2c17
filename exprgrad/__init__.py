"""exprgrad: compile formulas and small neural networks into straight-line gradient code.

The public API: :func:`compile_source`, :func:`compile_file`, :func:`load` (and, once imported
from their modules, training, checking and drawing helpers). See README.md.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import compile_file, compile_source, entry_point, load, load_source  # noqa: E402
from .errors import ExprgradError  # noqa: E402
from .importer import install, uninstall  # noqa: E402


def train(source, **settings):  # type: ignore[no-untyped-def]
    """Train a program (a .exg path, or a Program) as its 'train' statement says; keyword
    arguments override the settings (steps, lr, optimizer, seed, batch_size, reduce, backend).
    Returns a TrainResult: ``.losses`` (one per step), ``.params`` and ``.names``."""
    from .api import program_of
    from .lower import Program
    from .training import config_from_program
    from .training import train as run

    program = source if isinstance(source, Program) else program_of(source)
    config = config_from_program(program)
    for key, value in settings.items():
        if not hasattr(config, key):
            raise TypeError(f"unknown training setting {key!r}")
        setattr(config, key, value)
    return run(program, config=config)


def draw(source, function=None, *, at=None, backward=False, collapse=False):  # type: ignore[no-untyped-def]
    """A graphviz.Digraph of a function of a .exg file (renders inline in Jupyter); ``at``
    maps argument names to values to show each node's value and gradient."""
    from .drawing import draw as make

    return make(source, function, at=at, backward=backward, collapse=collapse)


__all__ = ["ExprgradError", "__version__", "compile_file", "compile_source", "draw", "entry_point",
           "install",
           "load", "load_source", "train", "uninstall"]
