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


@dataclass(frozen=True)
class Vjp:
    """A function's vector-Jacobian product: for cotangents ``douts`` of its outputs (input
    nodes, one per output, of its shape), the cotangent of each ``wrt`` node (every parameter
    tensor, in ``program.params`` order, when the function uses parameters; then its inputs)."""

    douts: list[Node]
    wrt: list[Node]
    cotangents: list[Node]


def vjp(program: Program, fn: Function) -> Vjp:
    """The vector-Jacobian product of ``fn`` (see :class:`Vjp`), derived once per program."""
    key = fn.name + "\0vjp"
    cached = program.derived.get(key)
    if cached is not None and cached[0] is fn:
        return cached[1]  # type: ignore[no-any-return]
    graph = program.graph
    n_in = len(fn.inputs)
    douts = [graph.make("input", (), (fn.name, "dout", n_in + k), out.shape)
             for k, out in enumerate(fn.outputs)]
    wrt = ([t.node for t in program.params.values()] if fn.uses_params else []) + list(fn.inputs)
    total: list[Node] | None = None
    for out, dout in zip(fn.outputs, douts):
        part = grad(graph, out, wrt, seed=dout)
        total = part if total is None else [graph.apply("add", a, b) for a, b in zip(total, part)]
    assert total is not None, "a function has at least one output"
    result = Vjp(douts, wrt, total)
    program.derived[key] = (fn, result)
    return result


def second_derivatives(program: Program, fn: Function) -> list[list[Node]]:
    """The Hessian of a scalar function of scalar arguments: its derived gradient (see
    :func:`derivatives`) differentiated again, row i holding d(df/dx_i)/dx_j."""
    first = derivatives(program, fn)
    if fn.uses_params or len(fn.outputs) != 1 or fn.outputs[0].shape != () or any(
            w.shape != () for w in first.wrt):
        raise GradientError("Hessians are computed for functions of scalar arguments only")
    return [grad(program.graph, g, first.wrt) for g in first.grads[0]]
