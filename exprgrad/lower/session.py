"""A session's environment: names bound to IR values that remember how they were computed.

Contract: an :class:`Environment` is the state behind ``exprgrad repl``. It owns one
:class:`Program`, one :class:`~exprgrad.ir.graph.Graph` and one
:class:`~exprgrad.lower.lowering.Lowerer` for its whole life and lowers each input against them,
so the cost of an input depends on the input (and the history of the values it reads), not on
the length of the session.

- **Values with history.** ``name = expr`` (:meth:`execute`) lowers ``expr`` against the
  bindings and binds ``name`` to the resulting node, like the notebook's ``Value``: a number (or
  any constant expression) becomes a fresh leaf. Every node's elements are computed once, when
  it is created, and never change: leaves are immutable (an update of the parameters makes new
  parameter leaves), so rebinding a name, redefining a def or training never changes what an
  earlier value was computed from.
- Session expressions are lowered without sharing (hash-consing) and without identities that
  answer with an existing node (``x + 0`` stays an addition): each operation typed is a node of
  its own, so the gradient with respect to a named intermediate counts the paths through it, as
  the notebook's ``Value.grad`` does. Rewrites that make a constant (the strong zero ``x * 0``)
  still apply, so values follow docs/numerics.md as compiled code does.
- **Gradients.** :meth:`gradient` returns d(root)/d(node) for every named node, every variable
  leaf (unless marked constant) and every parameter leaf in the root's history (of ``sum(root)``
  when the root is not a scalar), in reverse order of creation; data sets and literal numbers
  are constants. It remembers the parameters' part (the notebook's ``p.grad``), which
  :meth:`step` applies once: ``p.data += -lr * p.grad``.
- **Parameters** (``param``, ``net``) have current values (:attr:`param_values`, set by the
  caller through ``init`` and :meth:`set_params`); an expression sees the current version.
- **Declarations** (``def``, ``param``, ``net``, ``data``) may be repeated: the later one
  replaces the earlier, and every def that used it is lowered again (:meth:`declare` returns
  what it did, in words). A def reads session variables like a Python function reads globals:
  at call time, as leaves with gradients; in compiled code (:meth:`program_view`: training,
  ``:code``, ``:check``) as constants holding their current values.
- **Statements** (:meth:`execute`): ``name = expr``, ``name op= expr``, unpacking (``a, b =
  f(x)``, ``a, b = v``, ``a, b = x, y``) and ``for`` loops, run as Python would, one statement
  after another. A loop is unrolled by the lowerer as in a def (the same bounds, errors and
  limit); its variable is a number (a constant node, never named); each binding it makes is
  named with the iteration that made it (:attr:`where`). A statement is all or nothing: the
  bindings and names it made are undone when it fails (a mistake, an overflow, Ctrl-C).
- Mistakes raise :class:`ExprgradError` located in the text of the input that caused them (its
  :class:`Origin`); evaluation problems (an overflow) are errors too, never a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ExprgradError, ExprgradNameError, ExprgradTypeError, ExprgradValueError, Span
from ..ir.diff import diff_args, grad
from ..ir.graph import Graph, substitute
from ..ir.interpret import interpret
from ..ir.node import Node, reachable
from ..ir.ops import EvalAlgebra
from ..ir.program import Function, ParamTensor, Program
from ..limits import MAX_UNROLLED_STATEMENTS
from ..syntax.parser import (
    ConstDecl,
    DataDecl,
    Def,
    Expr,
    LayerDecl,
    NetDecl,
    ParamDecl,
    Statement,
)
from .lowering import Lowerer, check_name, flatten_values

#: the statements a session declares (a name bound to a function, network, ... of the program)
DECLARATIONS = (Def, ParamDecl, NetDecl, DataDecl, LayerDecl, ConstDecl)

_BINOPS = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
_ALGEBRA = EvalAlgebra()


@dataclass(frozen=True)
class Origin:
    """Where an input came from: the file name errors show and the text their spans index."""

    filename: str
    source: str


@dataclass
class Partial:
    """One line of a gradient: d(root)/d(node)."""

    node: Node
    label: str
    grad: list[float]
    kind: str  # "value" (a named node), "variable", "param"


@dataclass
class _Journal:
    """What a statement changed, to undo it: each name's binding before (None: unbound) and
    the nodes it named."""

    bindings: dict[str, Node | None] = field(default_factory=dict)
    labeled: list[int] = field(default_factory=list)


@dataclass
class _Decl:
    stmt: Statement
    origin: Origin
    refs: set[str] = field(default_factory=set)


class _SessionLowerer(Lowerer):
    """The lowerer with the session's name resolution (see :class:`Environment`)."""

    top_level_where = ""

    def __init__(self, env: Environment) -> None:
        super().__init__("", "<repl>")
        self.env = env
        self.expression_mode = False
        #: def name -> {session variable: the placeholder its body reads}
        self.globals_read: dict[str, dict[str, Node]] = {}

    def param_node(self, tensor: ParamTensor) -> Node:
        return self.env.param_leaf(tensor) if self.expression_mode else tensor.node

    def outer_name(self, name: str, span: Span) -> Node | None:
        if self.expression_mode:
            return self.env.data_leaf(name) if name in self.program.data else None
        if self.current is not None and name in self.env.bindings:
            return self._global(self.current, name, self.env.bindings[name].shape)
        return None

    def _global(self, fname: str, name: str, shape: tuple[int, ...]) -> Node:
        holes = self.globals_read.setdefault(fname, {})
        if name not in holes:
            holes[name] = self.graph.make("input", (), ("<global>", fname, name), shape)
        return holes[name]

    def inline_extra(self, fn: Function, span: Span) -> dict[Node, Node]:
        mapping: dict[Node, Node] = {}
        for name, hole in self.globals_read.get(fn.name, {}).items():
            if self.expression_mode:
                node = self.env.bindings.get(name)
                if node is None:
                    raise ExprgradNameError(f"'{fn.name}' reads the variable '{name}', which no "
                                            "longer exists", span,
                                            hint=f"bind '{name}' again or define '{fn.name}' "
                                            "again")
                if node.shape != hole.shape:
                    raise ExprgradTypeError(
                        f"'{fn.name}' reads the variable '{name}', which had shape "
                        f"{list(hole.shape)} when '{fn.name}' was defined and now has "
                        f"{list(node.shape)}", span, hint=f"define '{fn.name}' again")
                mapping[hole] = node
            else:
                assert self.current is not None
                mapping[hole] = self._global(self.current, name, hole.shape)
        if self.expression_mode and fn.uses_params:
            for tensor in self.program.params.values():
                mapping[tensor.node] = self.env.param_leaf(tensor)
        return mapping


class Environment:
    """See the module docstring. ``init(program, seed)`` gives the initial values of a program's
    parameters, as a flat list in ``program.param_order``."""

    def __init__(self, init: Callable[[Program, int], list[float]]) -> None:
        self.init = init
        self.lowerer = _SessionLowerer(self)
        self.program: Program = self.lowerer.program
        self.graph: Graph = self.program.graph
        self.bindings: dict[str, Node] = {}
        #: node id -> (name, line) of the first name bound to it
        self.labels: dict[int, tuple[str, int]] = {}
        #: node id -> the iteration of the loops typed in the session that named it ("i=2")
        self.where: dict[int, str] = {}
        self._journal: _Journal | None = None
        #: node id -> its elements: the value of every session node, computed once
        self.values: dict[int, list[float]] = {}
        #: leaf id -> "variable", "constant", "param" or "data"
        self.leaf_kind: dict[int, str] = {}
        self.param_values: dict[str, list[float]] = {}
        self._param_leaf: dict[str, Node] = {}
        self._leaf_tensor: dict[int, str] = {}
        #: parameter leaf id -> which version of its tensor it holds (1, 2, ...), per tensor
        self._version: dict[int, int] = {}
        self._updates: dict[str, int] = {}
        self._declarations = 0  # seeds the initial values of each declaration's parameters
        self._data_leaf: dict[str, Node] = {}
        self._serial = 0
        #: the last gradient's parameter part: tensor -> (the leaf it is for, d/d elements)
        self.param_grads: dict[str, tuple[Node, list[float]]] = {}
        self.decls: dict[str, _Decl] = {}

    # ---- leaves -------------------------------------------------------------------------
    def _leaf(self, tag: str, name: str, shape: tuple[int, ...], elems: list[float],
              kind: str) -> Node:
        self._serial += 1
        node = self.graph.make("input", (), (tag, name, self._serial), shape)
        self.values[node.id] = elems
        self.leaf_kind[node.id] = kind
        return node

    def param_leaf(self, tensor: ParamTensor) -> Node:
        """The leaf holding ``tensor``'s current values (a new one after each update)."""
        leaf = self._param_leaf.get(tensor.name)
        if leaf is None or leaf.shape != tensor.node.shape:
            leaf = self._leaf("<param>", tensor.name, tensor.node.shape,
                              list(self.param_values[tensor.name]), "param")
            self._param_leaf[tensor.name] = leaf
            self._leaf_tensor[leaf.id] = tensor.name
            self._updates[tensor.name] = self._updates.get(tensor.name, 0) + 1
            self._version[leaf.id] = self._updates[tensor.name]
        return leaf

    def data_leaf(self, name: str) -> Node:
        leaf = self._data_leaf.get(name)
        if leaf is None:
            value = self.program.data[name]
            shape = _shape_of(value)
            if shape is None:
                raise ExprgradTypeError(f"the data set '{name}' has rows of different lengths; "
                                        "it cannot be used in an expression",
                                        self.program.data_spans.get(name))
            leaf = self._leaf("<data>", name, shape, flatten_values(value), "data")
            self._data_leaf[name] = leaf
        return leaf

    def tensor_of(self, node: Node) -> str | None:
        """The parameter tensor a parameter leaf holds a version of."""
        return self._leaf_tensor.get(node.id)

    def is_current(self, node: Node) -> bool:
        """Whether a parameter leaf holds its tensor's current values."""
        tensor = self._leaf_tensor.get(node.id)
        return tensor is not None and self._param_leaf.get(tensor) is node

    # ---- expressions and bindings -------------------------------------------------------
    @contextmanager
    def _expression_mode(self) -> Iterator[None]:
        graph, lowerer = self.graph, self.lowerer
        saved = graph.share, graph.alias
        graph.share, graph.alias, lowerer.expression_mode = False, False, True
        try:
            yield
        finally:
            graph.share, graph.alias = saved
            lowerer.expression_mode = False

    def expression(self, expr: Expr, origin: Origin) -> Node:
        """Lower and evaluate an expression; its node (its value is :meth:`value`)."""
        with located(origin), self._expression_mode():
            self.lowerer.refs = set()
            self.lowerer.current = None
            node = self.lowerer.lower_expr(expr, self.bindings)
            self._evaluate([node], expr[1])
        return node

    def execute(self, stmt: Expr, origin: Origin) -> None:
        """Run a statement typed in the session, as Python would: a binding ``("assign", span,
        name, expr, augop_or_None)``, an unpacking ``("unpack", span, names, expr)`` or a for
        loop ``("for", span, var, start, stop, body)`` (see :mod:`exprgrad.syntax.parser`).
        Each statement is lowered and evaluated at once (a loop is unrolled, its variable a
        number known at compile time, as in a def). All of it or nothing: when it fails (a
        mistake, an overflow, Ctrl-C) the bindings are those it found."""
        with located(origin), self._transaction(), self._expression_mode():
            self.lowerer.refs = set()
            self.lowerer.current = None
            work: list[tuple[Expr, str]] = [(stmt, "")]  # a statement, its loops' iteration
            unrolled = 0
            while work:
                stmt, where = work.pop()
                kind, span = stmt[0], stmt[1]
                if kind == "assign":
                    _, _, name, expr, augop = stmt
                    self._check_variable(name, span)
                    if augop is not None:
                        if name not in self.bindings:
                            raise ExprgradNameError(f"'{name}' has no value yet", span,
                                                    hint=f"write '{name} = ...' first")
                        expr = ("bin", span, augop, ("name", span, name), expr)
                    node = self.lowerer.lower_expr(expr, self.bindings)
                    self._evaluate([node], expr[1])
                    self._set(name, node, span.line, where)
                elif kind == "unpack":
                    _, _, names, expr = stmt
                    for name in names:
                        self._check_variable(name, span)
                    nodes = self.lowerer._values(expr, self.bindings, len(names), span)
                    self._evaluate(nodes, expr[1])
                    for name, node in zip(names, nodes):
                        self._set(name, node, span.line, where)
                elif kind == "for":
                    expanded = self._unroll(stmt, MAX_UNROLLED_STATEMENTS - unrolled)
                    unrolled += len(expanded)
                    var, size = stmt[2], len(stmt[5]) + 1
                    items: list[tuple[Expr, str]] = []
                    for k in range(0, len(expanded), size):
                        number = expanded[k][3][3]  # each time: 'var = k', then the body
                        inner = f"{where}, {var}={number}" if where else f"{var}={number}"
                        items.append((("loop", span, var, expanded[k][3][2]), inner))
                        items.extend((s, inner) for s in expanded[k + 1:k + size])
                    work.extend(reversed(items))
                elif kind == "loop":  # (made above) the loop's variable: a number, as in a def
                    node = self.graph.const(stmt[3])
                    self._evaluate([node], span)
                    self._set(stmt[2], node, span.line, where, label=False)
                else:  # (the body of a for loop typed in the session was checked first)
                    raise AssertionError(f"unknown statement kind {kind}")

    def _unroll(self, stmt: Expr, budget: int) -> list[Expr]:
        """A for loop typed in the session, unrolled by the lowerer (its bounds and its limit
        are a def's), after checks that only a session needs."""
        _, span, var, start, stop, body = stmt
        self._check_variable(var, span)
        stack = list(body)
        while stack:
            inner = stack.pop()
            if inner[0] in ("return", "grad"):
                word = "return" if inner[0] == "return" else "grad"
                raise ExprgradTypeError(f"'{word}' belongs in a def, not in a for loop typed in "
                                        "the session", inner[1],
                                        hint="define a def with the loop in it, or leave the "
                                        f"'{word}' out")
            if inner[0] == "for":
                stack.extend(inner[5])
        for bound in (start, stop):
            node = self.lowerer.lower_expr(bound, self.bindings)
            if node.op != "const":  # (a constant that is not whole: the lowerer says so)
                variables = sorted(name for name in _names_in(bound) if name in self.bindings
                                   and self.bindings[name].op != "const")
                which = f" ('{variables[0]}')" if variables else ""
                raise ExprgradTypeError(
                    "a loop bound must be a whole number known at compile time", bound[1],
                    hint="use numbers, an outer loop's variable or a loaded file's constant "
                    f"('N = 4'); a session variable{which} is a value with a history, which is "
                    "neither a bound nor an index")
        return self.lowerer._unroll(stmt, self.bindings, budget, None)

    def _check_variable(self, name: str, span: Span) -> None:
        check_name(name, span, "variable")
        if name in self.lowerer.globals:
            what = self._kind_of_global(name)
            raise ExprgradNameError(f"'{name}' is already the name of a {what}", span,
                                    hint="choose another name for the variable")

    def _set(self, name: str, node: Node, line: int, where: str = "", label: bool = True
             ) -> None:
        """Bind ``name`` to a new value: a leaf when it was computed from numbers and data
        alone; named (``where``: in which iteration of the loops around it) unless it is a loop's
        variable."""
        if label and self._from_constants(node):
            node = self._leaf("<repl>", name, node.shape, list(self.values[node.id]), "variable")
        journal = self._journal
        if journal is not None and name not in journal.bindings:
            journal.bindings[name] = self.bindings.get(name)
        self.bindings[name] = node
        if label and node.id not in self.labels:
            self.labels[node.id] = (name, line)
            if where:
                self.where[node.id] = where
            if journal is not None:
                journal.labeled.append(node.id)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """Bindings and names made inside are undone if it fails (nodes and values made stay:
        nothing reaches them)."""
        assert self._journal is None, "statements do not nest"
        journal = self._journal = _Journal()
        try:
            yield
        except BaseException:
            for name, old in journal.bindings.items():
                if old is None:
                    self.bindings.pop(name, None)
                else:
                    self.bindings[name] = old
            for node_id in journal.labeled:
                self.labels.pop(node_id, None)
                self.where.pop(node_id, None)
            raise
        finally:
            self._journal = None

    def _from_constants(self, node: Node) -> bool:
        """Whether a new value depends on no variable or parameter: only on numbers and data.
        The walk stops at named nodes (never computed from constants only: such a binding is a
        leaf), so it visits only the nodes the last input created."""
        stack, seen = [node], set()
        while stack:
            n = stack.pop()
            kind = self.leaf_kind.get(n.id)
            if kind in ("variable", "constant", "param") or (n.id in self.labels and kind is None):
                return False
            seen.add(n.id)
            stack.extend(a for a in n.args if a.id not in seen)
        return True

    def _evaluate(self, roots: list[Node], span: Span | None) -> None:
        try:
            interpret(roots, self.values, _ALGEBRA, cached=True)
        except (ArithmeticError, ValueError) as err:  # e.g. an overflow in a float operation
            raise ExprgradValueError(f"the value cannot be computed: {err}", span) from None

    def value(self, node: Node) -> Any:
        """A node's value: a float, or nested lists of floats."""
        return nest(self.values[node.id], node.shape)

    def mark_constant(self, name: str) -> None:
        node = self.bindings.get(name)
        if node is None:
            raise ExprgradNameError(f"'{name}' is not a variable")
        if node.op == "const":  # a loop's variable: never a gradient to report
            return
        if self.leaf_kind.get(node.id) not in ("variable", "constant"):
            raise ExprgradValueError(f"'{name}' was computed from other values; only a leaf (a "
                                     "value typed in, like 'x = 2.0') can be marked constant",
                                     hint=f"mark the values '{name}' was computed from")
        self.leaf_kind[node.id] = "constant"

    # ---- gradients ----------------------------------------------------------------------
    def gradient(self, root: Node) -> list[Partial]:
        """d(root)/d(each named node, variable and parameter leaf), newest first."""
        history = reachable([root], diff_args)
        targets = [n for n in reversed(history)
                   if n.op != "const" and (self.leaf_kind.get(n.id) in ("variable", "param")
                                           or (n.id in self.labels
                                               and self.leaf_kind.get(n.id) != "constant"))]
        cotangents = self.cotangents(root, targets)
        out = []
        grads: dict[str, tuple[Node, list[float]]] = {}
        for node, cot in zip(targets, cotangents):
            kind = self.leaf_kind.get(node.id, "value")
            tensor = self._leaf_tensor.get(node.id)
            label = self.label(node)
            out.append(Partial(node, label, list(self.values[cot.id]), kind))
            if tensor is not None and (tensor not in grads or self.is_current(node)):
                grads[tensor] = (node, list(self.values[cot.id]))
        self.param_grads = grads
        return out

    def cotangents(self, root: Node, nodes: list[Node]) -> list[Node]:
        """The cotangent nodes of ``nodes`` for ``root`` (of ``sum(root)``), evaluated: their
        elements are in :attr:`values`."""
        cotangents = grad(self.graph, root, nodes)
        self._evaluate(cotangents, None)
        return cotangents

    def label(self, node: Node) -> str:
        """The name first bound to a node ("" for none); an older binding of a name that is now
        bound elsewhere says on which line it was bound."""
        if node.id not in self.labels:
            tensor = self._leaf_tensor.get(node.id)
            if tensor is not None:  # an older version of a tensor: its update counts
                return tensor if self.is_current(node) else (
                    f"{tensor} (before update {self._version[node.id]})")
            if node.op == "input" and node.attr[0] == "<data>":
                return str(node.attr[1])
            return ""
        name, line = self.labels[node.id]
        if self.bindings.get(name) is node or line <= 0:
            return name
        where = self.where.get(node.id)
        return f"{name} (line {line}, {where})" if where else f"{name} (line {line})"

    def element_labels(self, node: Node) -> list[str]:
        """The labels of a parameter leaf's elements (``n.layers.0.neurons.1.w.2``), marked
        when the leaf holds values its tensor had before an update."""
        tensor = self._leaf_tensor[node.id]
        declared = self.program.params.get(tensor)
        if declared is not None and declared.node.shape == node.shape:
            names = list(declared.element_names)
        else:
            names = [tensor] if node.shape == () else [f"{tensor}.{i}" for i in range(node.size)]
        if self.is_current(node):
            return names
        return [f"{n} (before update {self._version[node.id]})" for n in names]

    def step(self, lr: float) -> list[str]:
        """``p.data += -lr * p.grad`` with the last gradient, once; the tensors updated."""
        if not math.isfinite(lr):
            raise ExprgradValueError(f"the learning rate must be a finite number, not {lr}")
        if not self.param_grads:
            raise ExprgradValueError("there is no gradient of parameters to apply",
                                     hint="compute a loss of the parameters and ':grad' or "
                                     "':backward' it first")
        stale = [t for t, (leaf, _) in self.param_grads.items()
                 if t not in self.param_values or not self.is_current(leaf)]
        if stale:
            raise ExprgradValueError(
                f"the last gradient is for values of {', '.join(stale)} that have changed since "
                "(a step, training or a new declaration)",
                hint="compute the loss again with the current parameters and ':backward' it")
        bad = [t for t, (_, g) in self.param_grads.items() if not all(map(math.isfinite, g))]
        if bad:
            raise ExprgradValueError(f"the gradient of {', '.join(bad)} is not finite; no "
                                     "parameter was changed")
        new = {t: [p - lr * d for p, d in zip(self.param_values[t], g)]
               for t, (_, g) in self.param_grads.items()}
        if not all(math.isfinite(v) for values in new.values() for v in values):
            raise ExprgradValueError("the step would make a parameter infinite; no parameter was "
                                     "changed", hint="use a smaller learning rate")
        for tensor, values in new.items():
            self.set_params({tensor: values})
        updated = list(self.param_grads)
        self.param_grads = {}
        return updated

    def set_params(self, values: dict[str, list[float]]) -> None:
        """New current values for some tensors (earlier values keep their own)."""
        for tensor, elems in values.items():
            assert len(elems) == self.program.params[tensor].node.size
            self.param_values[tensor] = [float(v) for v in elems]
            self._param_leaf.pop(tensor, None)

    def flat_params(self) -> list[float]:
        return [self.param_values[t][i] for t, i in self.program.param_order]

    def set_flat_params(self, flat: list[float]) -> None:
        new: dict[str, list[float]] = {t: list(v) for t, v in self.param_values.items()}
        for value, (t, i) in zip(flat, self.program.param_order):
            new[t][i] = value
        self.set_params(new)

    # ---- declarations -------------------------------------------------------------------
    def _kind_of_global(self, name: str) -> str:
        if name in self.program.functions:
            return "function"
        if name in self.program.nets:
            return "network"
        if name in self.program.data:
            return "data set"
        if name in self.program.layer_types:
            return "layer"
        if name in self.lowerer.constants:
            return "constant"
        return "parameter"

    def declare(self, stmt: Statement, origin: Origin) -> list[str]:
        """Lower a def, param, net, data, layer or constant declaration; what happened, in
        words."""
        assert isinstance(stmt, DECLARATIONS)
        name = stmt.name
        said = []
        replaced = name in self.lowerer.globals
        what_before = self._kind_of_global(name) if replaced else None
        where = self.decls[name].origin.filename if name in self.decls else "?"
        self._lower_declaration(stmt, origin)
        if name in self.bindings:
            del self.bindings[name]
            said.append(f"'{name}' is no longer a variable")
        if replaced:
            said.append(f"redefined {what_before} '{name}' (the old one came from {where}; "
                        "values computed with it keep them)")
        said.extend(self._redo_dependents(name))
        return said

    def _lower_declaration(self, stmt: Statement, origin: Origin) -> None:
        """Lower ``stmt``, replacing the declaration of the same name; on failure nothing
        changes."""
        name = stmt.name  # type: ignore[union-attr]
        program, lowerer = self.program, self.lowerer
        saved = (dict(program.functions), dict(program.params), list(program.param_order),
                 dict(program.nets), dict(program.data), dict(program.data_spans),
                 dict(lowerer.globals), dict(self.param_values), dict(self._param_leaf),
                 dict(self._data_leaf), dict(lowerer.globals_read), dict(program.layer_types),
                 dict(lowerer.constants))
        try:
            self._forget(name)
            lowerer.refs = set()
            with located(origin):
                program.filename = origin.filename  # csv() reads beside a loaded file
                try:
                    lowerer.statement(stmt)
                finally:
                    program.filename = "<repl>"
                lowerer.check_generated_names()
                fn = program.functions.get(name)
                if fn is not None and fn.rule_spans and lowerer.globals_read.get(name):
                    read = ", ".join(repr(v) for v in lowerer.globals_read[name])
                    raise ExprgradTypeError(
                        f"'{name}' has grad rules but reads the session variable(s) {read}, "
                        "whose gradient no rule can give", fn.span,
                        hint="pass them in as arguments (with grad rules of their own)")
            new = [t for t in program.params if t not in self.param_values]
            if new:
                self._initialize(new)
        except BaseException:
            lowerer.current = None
            (program.functions, program.params, program.param_order, program.nets, program.data,
             program.data_spans, lowerer.globals, self.param_values, self._param_leaf,
             self._data_leaf, lowerer.globals_read, program.layer_types,
             lowerer.constants) = saved
            raise
        refs = set(lowerer.refs)
        if isinstance(stmt, Def):  # the constants it read (the lowerer folds them in)
            refs |= _names_in(stmt.body) & set(lowerer.constants)
        self.decls[name] = _Decl(stmt, origin, refs)

    def _initialize(self, tensors: list[str]) -> None:
        """Initial values for new tensors, through ``init`` on a program of just them (so the
        cost does not grow with the session's parameters). The first declaration draws with
        seed 0, as ``init_params(0)`` of a file declaring the same does; each later one with the
        next seed, so that two networks declared alike do not start alike."""
        program = self.program
        only = replace(program, functions={}, derived={},
                       params={t: program.params[t] for t in tensors},
                       param_order=[(t, i) for t, i in program.param_order if t in tensors])
        flat = self.init(only, self._declarations)
        self._declarations += 1
        fresh: dict[str, list[float]] = {t: [0.0] * program.params[t].node.size for t in tensors}
        for value, (t, i) in zip(flat, only.param_order):
            fresh[t][i] = value
        self.set_params(fresh)

    def _forget(self, name: str) -> None:
        program = self.program
        self.lowerer.globals.pop(name, None)
        program.functions.pop(name, None)
        program.derived.pop(name, None)
        self.lowerer.globals_read.pop(name, None)
        tensors = []
        program.layer_types.pop(name, None)
        self.lowerer.constants.pop(name, None)
        if name in program.nets:
            tensors = program.nets.pop(name).tensor_names
        elif name in program.params:
            tensors = [name]
        for t in tensors:
            program.params.pop(t, None)
            self.param_values.pop(t, None)
            self._param_leaf.pop(t, None)
        if tensors:
            program.param_order = [(t, i) for t, i in program.param_order if t not in tensors]
        if name in program.data:
            del program.data[name]
            program.data_spans.pop(name, None)
            self._data_leaf.pop(name, None)

    def _redo_dependents(self, changed: str) -> list[str]:
        """Lower again, in the order they were declared, the defs that use ``changed`` (or a
        def lowered again here)."""
        said = []
        redone = {changed}
        for name, decl in list(self.decls.items()):
            if name == changed or not isinstance(decl.stmt, Def) or not decl.refs & redone:
                continue
            try:
                self._lower_declaration(decl.stmt, decl.origin)
            except ExprgradError as err:  # what it used is gone: so is it (and what uses it)
                self._forget(name)
                del self.decls[name]
                redone.add(name)
                said.append(f"removed '{name}', which does not compile with the new "
                            f"{', '.join(sorted(decl.refs & redone - {name}))}: {err}")
                continue
            redone.add(name)
            used = ", ".join(sorted(decl.refs & redone - {name}))
            said.append(f"'{name}' now uses the new {used}")
        return said

    def forget_variable(self, name: str) -> None:
        self.bindings.pop(name, None)

    # ---- compiled code ------------------------------------------------------------------
    def program_view(self, data: dict[str, Any] | None = None, train: Any = None) -> Program:
        """The session's program for code generation: every def, with the session variables
        it reads replaced by constants holding their current values; ``data`` adds data
        sets."""
        functions = {}
        for name, fn in self.program.functions.items():
            holes = self.lowerer.globals_read.get(name)
            if holes:
                gone = [var for var in holes if var not in self.bindings]
                if gone:
                    err = ExprgradNameError(f"'{name}' reads the variable '{gone[0]}', which no "
                                            "longer exists", fn.span,
                                            hint=f"bind '{gone[0]}' again or define '{name}' "
                                            "again")
                    origin = self.decls[name].origin
                    raise err.with_source(origin.filename, origin.source)
                changed = [var for var, hole in holes.items()
                           if self.bindings[var].shape != hole.shape]
                if changed:
                    mismatch = ExprgradTypeError(
                        f"'{name}' reads the variable '{changed[0]}', whose shape has changed "
                        "since it was defined", fn.span, hint=f"define '{name}' again")
                    origin = self.decls[name].origin
                    raise mismatch.with_source(origin.filename, origin.source)
                mapping = {hole: self._constant(self.bindings[var])
                           for var, hole in holes.items()}
                outputs = substitute(self.graph, fn.outputs, mapping)
                fn = replace(fn, outputs=outputs)
            functions[name] = fn
        return replace(self.program, functions=functions, derived={},
                       data={**self.program.data, **(data or {})}, train=train)

    def _constant(self, node: Node) -> Node:
        elems = self.values[node.id]
        if node.shape == ():
            return self.graph.const(elems[0])
        rows = [self.graph.const(v) for v in elems]
        if len(node.shape) == 2:
            n = node.shape[1]
            rows = [self.graph.apply("stack", *rows[i:i + n]) for i in range(0, len(rows), n)]
        return self.graph.apply("stack", *rows)


@contextmanager
def located(origin: Origin) -> Iterator[None]:
    """Errors raised inside get the origin's file name and text."""
    try:
        yield
    except ExprgradError as err:
        if err.filename in ("<string>", "<repl>") and err.source is None:
            err.filename, err.source = origin.filename, origin.source
            err.text = err.source_line()
        raise


def _names_in(tree: Any) -> set[str]:
    """The names a statement's syntax tree mentions (iterative)."""
    names: set[str] = set()
    stack = [tree]
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, tuple):
            if x and x[0] == "name" and len(x) == 3:
                names.add(x[2])
            stack.extend(x)
    return names


def _shape_of(value: Any) -> tuple[int, ...] | None:
    """The shape of nested lists of numbers (rank at most 2), None if ragged."""
    if not isinstance(value, list):
        return ()
    if not value or not isinstance(value[0], list):
        return (len(value),) if all(not isinstance(v, list) for v in value) else None
    n = len(value[0])
    if all(isinstance(r, list) and len(r) == n and all(not isinstance(v, list) for v in r)
           for r in value):
        return (len(value), n)
    return None


def nest(elems: list[float], shape: tuple[int, ...]) -> Any:
    """Row-major elements as a value of ``shape``: a float, a list or a list of rows."""
    if shape == ():
        return elems[0]
    if len(shape) == 1:
        return list(elems)
    n = shape[1]
    return [list(elems[i:i + n]) for i in range(0, len(elems), n)]
