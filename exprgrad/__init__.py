"""exprgrad: compile formulas and small neural networks into straight-line gradient code.

The public API: :func:`compile_source`, :func:`compile_file`, :func:`load` (and, once imported
from their modules, training, checking and drawing helpers). See README.md.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import compile_file, compile_source, load, load_source  # noqa: E402
from .errors import ExprgradError  # noqa: E402
from .importer import install, uninstall  # noqa: E402

__all__ = ["ExprgradError", "__version__", "compile_file", "compile_source", "install", "load",
           "load_source", "uninstall"]
