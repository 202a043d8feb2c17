"""The Python API: compile text or files to Python source, and load compiled modules.

The facade over the stages; names are re-exported here (``read_source`` and ``program_of`` from
:mod:`exprgrad.lower.lowering`, ``module_from_code`` and ``entry_point`` from
:mod:`exprgrad.emit.load`).

Contract: :func:`compile_source` returns generated module text (deterministic);
:func:`load_source` / :func:`load` compile and execute it as a fresh module object registered
under a pseudo-filename in :mod:`linecache`, so tracebacks, ``inspect`` and ``pdb`` show the
generated lines. ``backend`` is ``"python"`` (the scalar backend, the default) or ``"numpy"``
(batched); ``dtype`` is ``"float64"`` (the default) or, for the numpy backend, ``"float32"``
(the scalar backend computes with Python floats: asking it for float32 is an error). User
mistakes raise :class:`~exprgrad.errors.ExprgradError` subclasses.
"""

from __future__ import annotations

import types
from pathlib import Path

from .emit.arrays import check_dtype, generate_numpy
from .emit.load import entry_point, module_from_code
from .emit.module import safe_label
from .emit.scalar import generate
from .errors import ExprgradValueError
from .lower.lowering import compile_program, program_of, read_source
from .run.training import module_steps


def compile_source(text: str, filename: str = "<string>", *, hessians: bool = False,
                   backend: str = "python", dtype: str = "float64") -> str:
    """Compile exprgrad source text to the text of a Python module."""
    if backend not in ("python", "numpy"):
        raise ExprgradValueError(f"no backend {backend!r}", hint="backends: python, numpy")
    check_dtype(dtype, backend)
    program = compile_program(text, filename)
    steps, unroll, data = module_steps(program)
    if backend == "numpy":
        if hessians:
            raise ExprgradValueError("the numpy backend writes no Hessians")
        return generate_numpy(program, dtype=dtype, steps=steps)
    return generate(program, hessians=hessians, steps=steps, unroll=unroll, data=data)


def compile_file(path: str | Path, *, hessians: bool = False, backend: str = "python",
                 dtype: str = "float64") -> str:
    """Compile a .exg file to the text of a Python module."""
    return compile_source(read_source(path), str(path), hessians=hessians, backend=backend,
                          dtype=dtype)


def load_source(text: str, filename: str = "<string>", *, name: str | None = None,
                hessians: bool = False, backend: str = "python", dtype: str = "float64"
                ) -> types.ModuleType:
    """Compile source text and return the generated module, ready to call."""
    code = compile_source(text, filename, hessians=hessians, backend=backend, dtype=dtype)
    label = safe_label(filename)
    return module_from_code(code, name or label.rsplit(".", 1)[0],
                            f"<exprgrad:{label}>")


def load(path: str | Path, *, hessians: bool = False, backend: str = "python",
         dtype: str = "float64") -> types.ModuleType:
    """Compile a .exg file and return the generated module."""
    p = Path(path)
    code = compile_file(p, hessians=hessians, backend=backend, dtype=dtype)
    return module_from_code(code, p.stem, f"<exprgrad:{p.resolve()}.py>")


__all__ = ["compile_file", "compile_program", "compile_source", "entry_point", "load",
           "load_source", "module_from_code", "program_of", "read_source"]
