"""Reverse-mode differentiation from IR to IR.

Contract: :func:`grad` takes an output node and the nodes to differentiate with respect to and
returns, in the same graph, one cotangent node per ``wrt`` node (a zero constant where the output
does not depend on it). The walk is a reverse pass over the nodes in id order, accumulating
cotangents in a dict keyed by node; it only visits nodes that lie on a path from a ``wrt`` node to
the output, so no work is done for gradients nobody asked for. The result is ordinary IR: it can be
simplified, printed, drawn, converted to sympy and differentiated again.

A ``custom`` node (a call of a function with a user-written ``grad`` rule) is not differentiated
through its body: its rule, written in terms of the placeholder ``dout`` (a ``hole`` node), is
instantiated with the actual cotangent. Its args are ``(inputs..., body_output, hole, rules...)``
and its attr is ``(number_of_inputs, span_of_the_rule)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import GradientError
from .graph import Graph, substitute
from .node import Node, reachable
from .ops import OPS


def diff_args(node: Node) -> tuple[Node, ...]:
    """The args through which a gradient can flow."""
    if node.op == "custom":
        return node.args[: node.attr[0]]
    return node.args


def unbroadcast(graph: Graph, contribution: Node, shape: tuple[int, ...]) -> Node:
    """Sum a contribution of an elementwise op's output shape back to a broadcast input's shape."""
    if contribution.shape == shape:
        return contribution
    assert shape == (), f"cannot reduce {contribution!r} to shape {shape}"
    return graph.apply("sum", contribution)


def grad(graph: Graph, output: Node, wrt: Sequence[Node], seed: Node | None = None) -> list[Node]:
    """Cotangents of ``wrt`` for the output cotangent ``seed`` (default: ones)."""
    order = reachable([output], diff_args)
    targets = {w.id for w in wrt}
    needed: set[int] = set()
    for node in order:  # forward: which nodes depend on a wrt node
        if node.id in targets or any(a.id in needed for a in diff_args(node)):
            needed.add(node.id)

    if seed is None:
        seed = graph.const(1.0, output.shape)
    cotangent: dict[int, Node] = {output.id: seed}
    # only nodes this pass creates are named "d" + name: a cotangent that hash-consing answers
    # with an existing node (b for d(a*b)/da, the forward 'a*b + c' for d((a*b + c) * f)/df) is
    # a forward value and keeps its own name (or none)
    first_new = len(graph.nodes)
    saved_span = graph.span
    try:
        for node in reversed(order):
            g = cotangent.get(node.id)
            if g is None or node.id not in needed or not node.args:
                continue
            graph.span = graph.spans.get(node.id, saved_span)
            for arg, contribution in zip(diff_args(node), _local_vjp(graph, node, g)):
                if contribution is None or arg.id not in needed:
                    continue
                contribution = unbroadcast(graph, contribution, arg.shape)
                previous = cotangent.get(arg.id)
                total = contribution if previous is None else graph.apply("add", previous,
                                                                          contribution)
                cotangent[arg.id] = total
                name = graph.names.get(arg.id)
                if name is not None and total.id >= first_new:
                    graph.name(total, "d" + name)
    finally:
        graph.span = saved_span
    return [cotangent.get(w.id) or graph.const(0.0, w.shape) for w in wrt]


def _local_vjp(graph: Graph, node: Node, g: Node) -> Sequence[Node | None]:
    if node.op == "custom":
        n_in = node.attr[0]
        hole = node.args[n_in + 1]
        rules = node.args[n_in + 2:]
        return substitute(graph, rules, {hole: g})
    rule = OPS[node.op].vjp
    if rule is None:
        raise GradientError(f"no derivative rule is implemented for '{node.op}'",
                            graph.spans.get(node.id))
    return rule(graph, g, node, node.args, node.attr)
