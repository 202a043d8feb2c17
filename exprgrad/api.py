"""The Python API: compile text or files to Python source, and load compiled modules.

Contract: :func:`compile_source` returns generated module text (deterministic);
:func:`load_source` / :func:`load` compile and execute it as a fresh module object registered
under a pseudo-filename in :mod:`linecache`, so tracebacks, ``inspect`` and ``pdb`` show the
generated lines. User mistakes raise :class:`~exprgrad.errors.ExprgradError` subclasses.
"""

from __future__ import annotations

import linecache
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .codegen import generate
from .ir import no_gc
from .lower import Program, compile_program
from .modwriter import ENTRY_KINDS, safe_label


def read_source(path: str | Path) -> str:
    """Read a .exg file as UTF-8 text (a byte-order mark is dropped by the parser)."""
    from .errors import ExprgradValueError, Span

    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ExprgradValueError(f"cannot read {str(path)!r}: {err.strerror}",
                                 filename=str(path)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ExprgradValueError(f"the file is not UTF-8 text (byte {err.start} is "
                                 f"0x{data[err.start]:02x})", Span(line, col, line, col + 1),
                                 filename=str(path), hint="exprgrad reads UTF-8 source files"
                                 ) from None


def compile_source(text: str, filename: str = "<string>", *, hessians: bool = False) -> str:
    """Compile exprgrad source text to the text of a Python module."""
    return generate(compile_program(text, filename), hessians=hessians)


def compile_file(path: str | Path, *, hessians: bool = False) -> str:
    """Compile a .exg file to the text of a Python module."""
    return compile_source(read_source(path), str(path), hessians=hessians)


def program_of(path: str | Path) -> Program:
    return compile_program(read_source(path), str(path))


def module_from_code(code: str, name: str, pseudo_file: str) -> types.ModuleType:
    """Execute generated code as a new module; its source is registered in linecache."""
    module = types.ModuleType(name)
    module.__file__ = pseudo_file
    lines = code.splitlines(keepends=True)
    linecache.cache[pseudo_file] = (len(code), None, lines, pseudo_file)
    with no_gc():
        exec(compile(code, pseudo_file, "exec"), module.__dict__)  # noqa: S102 - verified
    return module


def load_source(text: str, filename: str = "<string>", *, name: str | None = None,
                hessians: bool = False) -> types.ModuleType:
    """Compile source text and return the generated module, ready to call."""
    code = compile_source(text, filename, hessians=hessians)
    label = safe_label(filename)
    return module_from_code(code, name or label.rsplit(".", 1)[0],
                            f"<exprgrad:{label}>")


def entry_point(module: types.ModuleType, function: str, kind: str = "grad"
                ) -> Callable[..., Any]:
    """The generated function of kind ``kind`` (see :data:`ENTRY_KINDS`) for the user's
    ``def function``, looked up in the module's ``ENTRY_POINTS`` table (a user name that would
    shadow a Python builtin or a name of the module is given another Python name there).
    Raises ``KeyError`` when the module has no such function."""
    table = getattr(module, "ENTRY_POINTS", None)
    if table is not None:
        return getattr(module, table[function][kind])  # type: ignore[no-any-return]
    found = getattr(module, function + ENTRY_KINDS[kind], None)
    if found is None:
        raise KeyError(f"{function!r} has no {kind} function in {module.__name__}")
    return found  # type: ignore[no-any-return]


def load(path: str | Path, *, hessians: bool = False) -> types.ModuleType:
    """Compile a .exg file and return the generated module."""
    p = Path(path)
    code = compile_file(p, hessians=hessians)
    return module_from_code(code, p.stem, f"<exprgrad:{p.resolve()}.py>")
