"""Saving and loading trained parameters as JSON.

Contract: :func:`save_params` writes the parameters by name with the source's hash and a
signature of the parameter layout (atomically; never over a file exprgrad did not write);
:func:`load_params` accepts exactly the files whose signature matches the program.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ExprgradValueError
from ..ir.program import Program
from ..readers import read_json
from ..version import __version__
from .files import write_output


def model_signature(program: Program) -> str:
    """Identifies the parameter layout: a saved file fits exactly the programs with this value."""
    text = "\n".join(f"{n}:{program.params[t].node.shape}" for n, (t, _) in
                     zip(program.param_names, program.param_order))
    return hashlib.sha256(text.encode()).hexdigest()


def save_params(path: str, program: Program, params: Sequence[float], *, force: bool = False,
                extra: dict[str, Any] | None = None) -> None:

    payload = {
        "exprgrad": __version__,
        "source": Path(program.filename).name,
        "source_sha256": hashlib.sha256(program.source.encode()).hexdigest(),
        "model_signature": model_signature(program),
        "params": {name: value for name, value in zip(program.param_names, params)},
        **(extra or {}),
    }
    write_output(path, json.dumps(payload, indent=2, allow_nan=True) + "\n", force=force)


#: the keys save_params writes
_KEYS = frozenset({"exprgrad", "source", "source_sha256", "model_signature", "params",
                   "final_loss", "steps"})


def load_params(path: str, program: Program) -> list[float]:
    """The parameters of a file written by :func:`save_params` for this program's layout: a
    number (not a string, not true/false) for every parameter name and no other name."""
    payload = read_json(path)
    if not isinstance(payload, dict) or not isinstance(payload.get("params"), dict):
        raise ExprgradValueError("not a parameter file written by exprgrad", filename=path)
    if "model_signature" not in payload:
        raise ExprgradValueError("not a complete parameter file written by exprgrad: it has no "
                                 "model_signature", filename=path,
                                 hint="save the parameters again with 'exprgrad train --save'")
    if payload.get("model_signature") != model_signature(program):
        raise ExprgradValueError(f"the parameters of another program "
                                 f"({payload.get('source', '?')})", filename=path,
                                 hint="its parameter names or shapes differ from this file's")
    unknown = sorted(set(payload) - _KEYS)
    if unknown:
        raise ExprgradValueError(f"unknown keys {', '.join(map(repr, unknown[:5]))}",
                                 filename=path, hint="a parameter file has the keys "
                                 + ", ".join(sorted(_KEYS)))
    values = payload["params"]
    names = program.param_names
    known = set(names)
    missing = [n for n in names if n not in values]
    extra = [n for n in values if n not in known]
    for problem, listed in (("missing parameters", missing), ("unknown parameters", extra)):
        if listed:
            raise ExprgradValueError(f"{problem} {', '.join(map(repr, listed[:5]))}"
                                     + (" ..." if len(listed) > 5 else ""), filename=path)
    for name in names:
        value = values[name]
        if not isinstance(value, float) or not math.isfinite(value):
            raise ExprgradValueError(f"the value of {name!r} is {json.dumps(value)[:40]}, not a "
                                     "finite number", filename=path)
    return [values[name] for name in names]
