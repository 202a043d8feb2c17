"""Calling compiled functions by name with user-given values (used by `eval`, the REPL, tests).

Contract: :func:`evaluate` loads the compiled module for a program, calls ``FUNC_grad`` with the
given argument values (and the parameters, for a function that uses them) and returns a
:class:`Result`: the value(s) and the gradient keyed by argument (or parameter) name.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass
from typing import Any

from ..emit.load import entry_point
from ..errors import ExprgradTypeError, ExprgradValueError
from ..ir.program import Function, Program
from ..readers import parse_value


@dataclass
class Result:
    function: str
    args: dict[str, Any]
    value: Any
    grad: Any  # dict name -> value, or a list of such dicts for several outputs

    def to_json(self) -> dict[str, Any]:
        return {"function": self.function, "value": jsonable(self.value),
                "grad": jsonable(self.grad)}


def jsonable(value: Any) -> Any:
    """Floats stay floats; nan and infinities become the strings "nan", "inf", "-inf"."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def parse_assignments(items: list[str], fn: Function) -> dict[str, Any]:
    """``NAME=VALUE`` strings (VALUE a number or a JSON list) to checked argument values."""
    values: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ExprgradValueError(f"expected NAME=VALUE, got {item!r}")
        if name not in fn.arg_names:
            raise ExprgradValueError(f"'{fn.name}' has no argument '{name}'",
                                     hint=f"its arguments are {', '.join(fn.arg_names) or 'none'}")
        if name in values:
            raise ExprgradValueError(f"'{name}' is given twice")
        values[name] = parse_value(name, text)
    for name, shape in zip(fn.arg_names, fn.arg_shapes):
        if name not in values:
            raise ExprgradValueError(f"missing a value for '{name}'",
                                     hint=f"pass {name}=VALUE")
        values[name] = check_value(name, values[name], shape)
    return values


def check_value(name: str, value: Any, shape: tuple[int, ...]) -> Any:
    if shape == ():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExprgradTypeError(f"'{name}' is a scalar; got {value!r}")
        return float(value)
    if not isinstance(value, list) or len(value) != shape[0]:
        got = (f"a list of {len(value)}" if isinstance(value, list) else f"{value!r}")
        raise ExprgradTypeError(f"'{name}' is a vector of {shape[0]} numbers; got {got}"
                                if len(shape) == 1 else
                                f"'{name}' is a {shape[0]}x{shape[1]} matrix (a list of rows); "
                                f"got {got}")
    return [check_value(f"{name}[{i}]", v, shape[1:]) for i, v in enumerate(value)]


def evaluate(program: Program, module: types.ModuleType, fname: str, args: dict[str, Any],
             params: list[float] | None = None) -> Result:
    fn = program.functions[fname]
    positional = [args[a] for a in fn.arg_names]
    if fn.uses_params:
        if params is None:
            params = module.init_params(0)
        value, grads = entry_point(module, fname, "grad")(params, *positional)
        names = list(module.PARAM_NAMES)
        keyed: Any = ({n: g for n, g in zip(names, grads)} if len(fn.outputs) == 1 else
                      [{n: g for n, g in zip(names, row)} for row in grads])
    else:
        value, grads = entry_point(module, fname, "grad")(*positional)
        keyed = ({n: g for n, g in zip(fn.arg_names, grads)} if len(fn.outputs) == 1 else
                 [{n: g for n, g in zip(fn.arg_names, row)} for row in grads])
    return Result(fname, args, value, keyed)


def format_result(result: Result) -> str:
    """The human-readable form printed by `exprgrad eval`."""
    call = ", ".join(f"{k}={format_value(v)}" for k, v in result.args.items())
    lines = [f"{result.function}({call}) = {format_value(result.value)}"]
    rows = result.grad if isinstance(result.grad, list) else [result.grad]
    values = result.value if len(rows) > 1 else [result.value]
    for k, (row, value) in enumerate(zip(rows, values)):
        out = result.function if len(rows) == 1 else f"{result.function}[{k}]"
        if isinstance(value, list):  # a vector output: the gradient of the sum of its elements
            out = f"(sum {out})"
        for name, g in row.items():
            lines.append(f"  d{out}/d{name} = {format_value(g)}")
    return "\n".join(lines)


def format_value(value: Any) -> str:
    """Floats with 10 significant digits; lists in brackets, tuples in parentheses."""
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(format_value(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    return str(value)
