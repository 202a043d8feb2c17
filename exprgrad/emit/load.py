"""Running generated code: a module object from generated text, and its functions by user name.

Contract: :func:`module_from_code` executes generated source as a fresh module registered under
a pseudo-filename in :mod:`linecache` (tracebacks, ``inspect`` and ``pdb`` show the generated
lines); :func:`entry_point` finds the generated function of a kind for a user's ``def`` through
the module's ``ENTRY_POINTS`` table.
"""

from __future__ import annotations

import linecache
import types
from collections.abc import Callable
from typing import Any

from ..ir.graph import no_gc
from .module import ENTRY_KINDS


def module_from_code(code: str, name: str, pseudo_file: str) -> types.ModuleType:
    """Execute generated code as a new module; its source is registered in linecache."""
    module = types.ModuleType(name)
    module.__file__ = pseudo_file
    lines = code.splitlines(keepends=True)
    linecache.cache[pseudo_file] = (len(code), None, lines, pseudo_file)
    with no_gc():
        exec(compile(code, pseudo_file, "exec"), module.__dict__)  # noqa: S102 - verified
    return module


def entry_point(module: types.ModuleType, function: str, kind: str = "grad"
                ) -> Callable[..., Any]:
    """The generated function of kind ``kind`` (see :data:`ENTRY_KINDS`) for the user's
    ``def function``, looked up in the module's ``ENTRY_POINTS`` table (a user name that would
    shadow a Python builtin or a name of the module is given another Python name there).
    Raises ``KeyError`` when the module has no such function."""
    if kind not in ENTRY_KINDS:
        raise KeyError(f"no kind {kind!r}: the kinds are {', '.join(ENTRY_KINDS)}")
    table = getattr(module, "ENTRY_POINTS", None)
    if table is not None:
        if function not in table:
            raise KeyError(f"{module.__name__} has no def {function!r}; its defs: "
                           f"{', '.join(table) or 'none'}")
        if kind not in table[function]:
            raise KeyError(f"{function!r} has no {kind} function in {module.__name__}; it has "
                           f"{', '.join(table[function])}")
        return getattr(module, table[function][kind])  # type: ignore[no-any-return]
    found = getattr(module, function + ENTRY_KINDS[kind], None)
    if found is None:
        raise KeyError(f"{function!r} has no {kind} function in {module.__name__}")
    return found  # type: ignore[no-any-return]
