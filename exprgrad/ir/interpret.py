"""The one interpreter over the IR: elements of nodes under an element algebra.

Contract: :func:`interpret` walks the nodes ``roots`` depend on in topological (id) order,
iteratively, and computes each node's elements (a row-major flat list) from its arguments'
elements through the op table's ``unroll`` and the given algebra (floats, sympy expressions,
generated statements). ``env`` gives the elements of leaves (inputs, parameters, holes) and is
extended in place; a constant's elements come from ``algebra.const``; a ``custom`` node's value is
its body's. ``before(node)`` runs before a node is computed and ``after(node, elems)`` may replace
its elements (the scalar backend names statements after the user's variables there). With
``cached=True`` the walk does not enter nodes whose elements ``env`` already holds, so a session
that keeps ``env`` pays only for new nodes, however long the history behind them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .node import Node, reachable, value_args
from .ops import OPS, Algebra


def interpret(roots: Sequence[Node], env: dict[int, list[Any]], algebra: Algebra, *,
              before: Callable[[Node], None] | None = None,
              after: Callable[[Node, list[Any]], list[Any]] | None = None,
              cached: bool = False) -> list[list[Any]]:
    """The elements of each root (see the module docstring)."""
    follow = (lambda n: () if n.id in env else value_args(n)) if cached else value_args
    for node in reachable(roots, follow):
        if node.id in env:
            continue
        if node.op == "const":
            env[node.id] = [algebra.const(float(node.attr))] * node.size
            continue
        if node.op == "custom":
            env[node.id] = env[node.args[node.attr[0]].id]
            continue
        assert node.op not in ("input", "param", "hole"), f"no value for the leaf {node!r}"
        spec = OPS[node.op]
        assert spec.unroll is not None, f"{node.op} cannot be unrolled"
        if before is not None:
            before(node)
        elems = spec.unroll(algebra, node.op, [env[a.id] for a in node.args], node.attr,
                            [a.shape for a in node.args], node.shape)
        env[node.id] = after(node, elems) if after is not None else elems
    return [env[r.id] for r in roots]
