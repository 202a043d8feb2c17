"""Modules of just what a command uses: some defs, some kinds of generated function, one backend.

Contract: :func:`module_of` generates (and verifies) a module holding only the given functions'
generated functions of the given kinds, on the given backend, and loads it: commands that call
a few functions (training, predicting, checking, plotting) never derive, print nor compile the
rest. Initial parameters need no module at all (:func:`exprgrad.emit.module.initial_params`).
"""

from __future__ import annotations

import types
from collections.abc import Collection, Sequence
from dataclasses import replace

from ..ir.program import Function, Program
from .arrays import generate_numpy
from .load import module_from_code
from .scalar import NUMPY_HINT, generate


def module_of(program: Program, functions: Sequence[Function], kinds: Collection[str],
              backend: str = "python", *, hint: str = NUMPY_HINT, dtype: str = "float64",
              steps: Sequence[str] = ("sgd",), unroll: int = 0,
              data: tuple[str, list[list[list[float]]]] | None = None,
              array_api: bool = False) -> types.ModuleType:
    """The loaded module of ``functions`` (defs of ``program``, or functions built on its graph
    such as the predictor) with only their generated functions of ``kinds``, on ``backend``
    (``"python"`` or ``"numpy"``, computing in ``dtype``); ``hint`` goes with a scalar limit's
    refusal; ``steps``, ``unroll`` and ``data`` say which training steps the step kinds are
    written for (see :func:`exprgrad.emit.scalar.generate`); ``array_api``: a numpy module
    with the array-API twins (for arrays of other libraries: training on a device), which
    commands computing on numpy arrays do without."""
    only = replace(program, functions={fn.name: fn for fn in functions})
    if backend == "numpy":
        code = generate_numpy(only, kinds=kinds, dtype=dtype, steps=steps, array_api=array_api)
    else:
        code = generate(only, kinds=kinds, hint=hint, steps=steps, unroll=unroll, data=data)
    return module_from_code(code, f"exg_{backend}", f"<exprgrad:{program.filename}>")
