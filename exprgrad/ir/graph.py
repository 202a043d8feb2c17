"""The intermediate representation: an immutable, hash-consed SSA graph of ops with static shapes.

Contract:
- A :class:`Node` is immutable: ``op`` (a name in the op table), ``args`` (input nodes),
  ``attr`` (a hashable: a constant's value, an input's name, an index) and ``shape`` (``()`` for a
  scalar, ``(n,)`` for a vector, ``(m, n)`` for a matrix). Nodes compare by identity.
- A :class:`Graph` creates nodes. Structurally equal nodes are one node (hash-consing), so common
  subexpressions are shared by construction. Node ids count up in creation order and every node's
  args are older than it, so sorting a set of nodes by id is a topological order.
- :meth:`Graph.apply` is the smart constructor: it checks shapes (via the op table), folds
  constants and applies algebraic identities that are exact (``x + 0``, ``x * 1``, ``--x``).
- Every traversal here is iterative: chains 10^4 deep and graphs of 10^5 nodes are fine.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..errors import Span
from .node import Node, Shape, all_args, reachable
from .ops import OPS


@dataclass
class Graph:
    """Creates and owns nodes. ``line`` is the source line recorded for nodes created now."""

    nodes: list[Node] = field(default_factory=list)
    _table: dict[tuple[Any, ...], Node] = field(default_factory=dict)
    #: node id -> the source span of the statement that first created it
    spans: dict[int, Span] = field(default_factory=dict)
    #: node id -> a user name bound to it (first binding wins); used to name generated variables
    names: dict[int, str] = field(default_factory=dict)
    span: Span | None = None
    simplify: bool = True
    #: hash-consing of operation nodes (common-subexpression elimination); leaves are always
    #: shared. Off only to measure what it saves (benchmarks/ablation.py).
    share: bool = True
    #: whether an identity may answer with an existing node (``x + 0`` is ``x`` itself); a
    #: session turns it off, so that each operation typed is a node of its own (the strong zero
    #: ``x * 0 -> 0`` and the rewrites that make new nodes still apply)
    alias: bool = True
    #: node id -> the network layer that created it (e.g. "n.layers.0"), for drawing clusters
    groups: dict[int, str] = field(default_factory=dict)
    group: str | None = None

    def make(self, op: str, args: Sequence[Node], attr: Any, shape: Shape) -> Node:
        """Create (or find) a node exactly as given: no checks, no folding."""
        key = (op, tuple(a.id for a in args), attr, shape)
        found = self._table.get(key)
        if found is not None and (self.share or not args):
            return found
        node = Node(len(self.nodes), op, tuple(args), attr, shape)
        self.nodes.append(node)
        self._table[key] = node
        if self.span is not None:
            self.spans[node.id] = self.span
        if self.group is not None:
            self.groups[node.id] = self.group
        return node

    def apply(self, op: str, *args: Node, attr: Any = None) -> Node:
        """The smart constructor: shape check, constant folding, exact simplifications."""
        spec = OPS[op]
        shape = spec.shape_of(op, [a.shape for a in args], attr)
        if self.simplify and spec.simplify is not None:
            before = len(self.nodes)
            simpler = spec.simplify(self, args, attr, shape)
            if simpler is not None and (self.alias or simpler.id >= before
                                        or (op == "mul" and simpler.op == "const")):
                return simpler  # (the strong zero x * 0 -> 0 is a value rule: always kept)
        if self.simplify and spec.fold is not None and args and all(a.op == "const" for a in args):
            # plain floats: a constant's attr compares by repr (its hash-consing key), which
            # arithmetic must not see (nan == nan, 3.0 != 3 there)
            value = spec.fold([float(a.attr) for a in args], attr, [a.shape for a in args],
                              shape)
            if value is not None:
                return self.const(value, shape)
        return self.make(op, args, attr, shape)

    def const(self, value: float, shape: Shape = ()) -> Node:
        """A constant filled with ``value`` (always a float; -0.0 kept distinct from 0.0)."""
        value = float(value)
        # repr distinguishes 0.0 from -0.0 and keeps nan hashable as one key
        return self.make("const", (), _ConstKey(value), shape)

    def name(self, node: Node, name: str) -> None:
        self.names.setdefault(node.id, name)


class _ConstKey(float):
    """A float whose equality is by repr: 0.0 != -0.0 and nan == nan, so hash-consing is exact."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, float) and repr(float(self)) == repr(float(other))

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(repr(float(self)))


def substitute(graph: Graph, roots: Sequence[Node], mapping: dict[Node, Node]) -> list[Node]:
    """Rebuild ``roots`` with every node in ``mapping`` replaced; returns the new roots.

    Nodes not depending on a replaced node are kept as they are. Rebuilding goes through
    :meth:`Graph.apply`, so the result is folded and shared like any other IR.
    """
    order = reachable(roots, all_args)
    new: dict[int, Node] = {}
    for node in order:
        if node in mapping:
            new[node.id] = mapping[node]
            continue
        args = tuple(new[a.id] for a in node.args)
        if all(a is b for a, b in zip(args, node.args)):
            new[node.id] = node
        elif node.op == "custom":
            new[node.id] = graph.make("custom", args, node.attr, args[node.attr[0]].shape)
        else:
            new[node.id] = graph.apply(node.op, *args, attr=node.attr)
        if node.id in graph.names:
            graph.name(new[node.id], graph.names[node.id])
    return [new[r.id] for r in roots]


def check_program(roots: Sequence[Node]) -> None:
    """Validate the invariants every pass must keep (run by the tests after every pass)."""
    for node in reachable(roots, all_args):
        assert node.op in OPS, f"unknown op in {node!r}"
        for a in node.args:
            assert a.id < node.id, f"arg %{a.id} is not older than {node!r}"
        if node.op not in ("custom", "const", "input", "param", "hole"):
            shape = OPS[node.op].shape_of(node.op, [a.shape for a in node.args], node.attr)
            assert shape == node.shape, f"shape {node.shape} != {shape} in {node!r}"


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: compiling creates millions of acyclic objects, and
    repeated collections of the growing heap made large compiles 40% slower."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
