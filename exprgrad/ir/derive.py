"""Differentiation of a program's functions, done once per function and shared.

Contract: :func:`derivatives` returns a function's :class:`Derivatives`: the nodes it is
differentiated with respect to (every parameter tensor for a function that uses parameters, in
``program.params`` order; otherwise its inputs) and, per output, one cotangent node per such node.
The result is computed on the first request and cached in the program, so the scalar backend,
the numpy backend and ``check`` read one gradient, not three derivations of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import GradientError
from .diff import grad
from .node import Node
from .program import Function, Program


@dataclass(frozen=True)
class Derivatives:
    wrt: list[Node]
    grads: list[list[Node]]  # per output, one cotangent per ``wrt`` node

    @property
    def flat(self) -> list[Node]:
        return [g for row in self.grads for g in row]


def derivatives(program: Program, fn: Function) -> Derivatives:
    """The gradient IR of every output of ``fn`` (see the module docstring)."""
    cached = program.derived.get(fn.name)
    if cached is not None and cached[0] is fn:
        return cached[1]
    wrt = [t.node for t in program.params.values()] if fn.uses_params else list(fn.inputs)
    result = Derivatives(wrt, [grad(program.graph, out, wrt) for out in fn.outputs])
    program.derived[fn.name] = (fn, result)
    return result


def second_derivatives(program: Program, fn: Function) -> list[list[Node]]:
    """The Hessian of a scalar function of scalar arguments: its derived gradient (see
    :func:`derivatives`) differentiated again, row i holding d(df/dx_i)/dx_j."""
    first = derivatives(program, fn)
    if fn.uses_params or len(fn.outputs) != 1 or fn.outputs[0].shape != () or any(
            w.shape != () for w in first.wrt):
        raise GradientError("Hessians are computed for functions of scalar arguments only")
    return [grad(program.graph, g, first.wrt) for g in first.grads[0]]
