"""IR nodes and traversals: the vocabulary every stage shares, with no op semantics.

Contract:
- A :class:`Node` is immutable: ``op`` (a name in the op table), ``args`` (input nodes),
  ``attr`` (a hashable: a constant's value, an input's name, an index) and ``shape`` (``()`` for a
  scalar, ``(n,)`` for a vector, ``(m, n)`` for a matrix). Nodes compare by identity; ids count
  up in creation order and every node's args are older than it, so sorting a set of nodes by id
  is a topological order. Nodes are made by :class:`exprgrad.ir.graph.Graph`.
- :func:`reachable` is iterative: chains 10^4 deep and graphs of 10^5 nodes are fine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Shape = tuple[int, ...]


@dataclass(frozen=True, eq=False, slots=True)
class Node:
    id: int
    op: str
    args: tuple[Node, ...]
    attr: Any
    shape: Shape

    def __hash__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        args = ", ".join(f"%{a.id}" for a in self.args)
        attr = "" if self.attr is None else f" [{self.attr!r}]"
        shape = "" if self.shape == () else f" : {self.shape}"
        return f"%{self.id} = {self.op}({args}){attr}{shape}"

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def value_args(node: Node) -> tuple[Node, ...]:
    """The args a node's *value* depends on (a custom-rule node's value is its body's output)."""
    if node.op == "custom":
        return (node.args[node.attr[0]],)
    return node.args


def reachable(roots: Iterable[Node], follow: Callable[[Node], Iterable[Node]] = value_args
              ) -> list[Node]:
    """All nodes reachable from ``roots`` through ``follow``, in topological (id) order."""
    seen: dict[int, Node] = {}
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node.id in seen:
            continue
        seen[node.id] = node
        stack.extend(a for a in follow(node) if a.id not in seen)
    return [seen[i] for i in sorted(seen)]


def depends_on(roots: Iterable[Node], ids: set[int]) -> set[int]:
    """Ids of the nodes reachable from ``roots`` that depend on a node of ``ids`` (the inputs:
    in numpy code the batched values; in an unrolled step the per-example ones)."""
    out: set[int] = set()
    for node in reachable(roots):
        if node.id in ids or any(a.id in out for a in node.args):
            out.add(node.id)
    return out


def all_args(node: Node) -> tuple[Node, ...]:
    return node.args
