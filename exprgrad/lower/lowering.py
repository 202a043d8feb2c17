"""Syntax tree to IR: names resolved, calls inlined, shapes checked, every mistake located.

Contract: :func:`lower` turns the statements from :func:`exprgrad.syntax.parser.parse` into a
:class:`Program`: one :class:`Function` per ``def`` (input nodes and output nodes in one shared,
hash-consed :class:`~exprgrad.ir.graph.Graph`), the parameter tensors in their canonical order, the
data sets and the training settings. Every user mistake raises an :class:`ExprgradError` with the
span of the offending text. Expressions are lowered with an explicit stack (no recursion), and a
call of an earlier ``def`` is inlined by substituting its lowered body, so call chains of any
length need no recursion either.
"""

from __future__ import annotations

import dataclasses
import difflib
import keyword
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import (
    ExprgradError,
    ExprgradLimitError,
    ExprgradNameError,
    ExprgradTypeError,
    ExprgradValueError,
    Span,
)
from ..ir.graph import Graph, no_gc, substitute
from ..ir.node import Node, all_args, reachable
from ..ir.ops import BUILTINS, OPS, ShapeMismatch
from ..ir.program import ENTRY_KINDS, Function, Net, ParamTensor, Program
from ..limits import (
    MAX_LAYER_DEPTH,
    MAX_NETWORKS,
    MAX_NODES,
    MAX_PARAMS,
    MAX_TENSOR_ELEMENTS,
    MAX_UNROLLED_STATEMENTS,
)
from ..readers import read_csv, read_text
from ..syntax.parser import (
    ConstDecl,
    DataDecl,
    Def,
    Expr,
    LayerDecl,
    NetDecl,
    ParamDecl,
    Statement,
    TrainDecl,
    parse,
)
from .nn import ACTIVATIONS, call_net, declare_net

#: names a program may not bind: the language's own words and builtins
LANGUAGE_WORDS = frozenset({"def", "return", "param", "net", "data", "train", "grad", "dout",
                            "uniform", "normal", "csv", "MLP", "Layer", "Neuron", "pi",
                            *("mean", "softmax", "concat", "trace", "diag", "eye"),
                            *("reshape", "flatten")})

#: the networks ``net`` makes without a user's ``layer`` type: name -> positional arguments
BUILTIN_NETS = {"MLP": 2, "Layer": 2, "Neuron": 1}

#: reductions written with the op table's ops (no op of their own): name -> what it takes
REDUCTIONS = {"mean": "a vector or a matrix", "softmax": "a vector",
              "max": "a vector or a matrix (or two numbers)",
              "min": "a vector or a matrix (or two numbers)"}

#: the reductions that take ``axis=`` (see :meth:`Lowerer._along_axis`)
AXIS_REDUCTIONS = ("sum", "mean", "max", "min", "logsumexp", "softmax")

_BINOPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow", "@": "matmul",
           "<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}


def compile_program(text: str, filename: str = "<string>", *, allow_empty: bool = False
                    ) -> Program:
    """Parse and lower source text; errors carry the file name and text."""
    with no_gc():
        return _compile_program(text, filename, allow_empty)


def _compile_program(text: str, filename: str, allow_empty: bool) -> Program:
    try:
        statements = parse(text, filename)
        if not statements and not allow_empty:
            raise ExprgradValueError("the file defines nothing", Span(1, 1, 1, 2),
                                     hint="a file holds 'def', 'param', 'net', 'data' and "
                                     "'train' statements")
        return Lowerer(text, filename).run(statements)
    except ExprgradError as err:
        raise err.with_source(filename, text) from None


def read_source(path: str | Path) -> str:
    """A .exg file's text: a regular file of UTF-8 (see :func:`exprgrad.readers.read_text`)."""
    return read_text(path, ".exg file")


def program_of(path: str | Path) -> Program:
    """Read and compile a .exg file."""
    return compile_program(read_source(path), str(path))


def check_name(name: str, span: Span, what: str) -> None:
    """Reject names that Python reserves, that the language uses, or that start with '_'."""
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise ExprgradNameError(f"'{name}' is a name that Python reserves; it cannot name "
                                f"{_article(what)} {what}",
                                span, hint=f"rename it, e.g. '{name}1'")
    if name.startswith("_"):
        raise ExprgradNameError(f"names starting with '_' are reserved for generated code "
                                f"('{name}')", span, hint=f"rename it, e.g. '{name.lstrip('_')}'"
                                if name.strip("_") else None)
    if "__" in name:
        raise ExprgradNameError(f"names containing '__' are reserved ('{name}')", span,
                                hint=f"rename it, e.g. '{name.replace('__', '_')}'")
    if name in LANGUAGE_WORDS or name in BUILTINS:
        raise ExprgradNameError(f"'{name}' is a built-in name of exprgrad; it cannot name "
                                f"{_article(what)} {what}", span, hint=f"rename it, e.g. '{name}1'")


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def did_you_mean(name: str, candidates: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


@dataclass
class _Scope:
    """The names inside one network made from a ``layer`` type (``net r = Residual(4)``): the
    layer's arguments and constants (numbers), its parameter tensors, inner networks and defs.
    ``prefix`` is the network's full name (``r``, ``r.inner``), which its tensors' names
    extend."""

    prefix: str
    constants: dict[str, float]
    params: dict[str, ParamTensor] = field(default_factory=dict)
    nets: dict[str, Net] = field(default_factory=dict)
    functions: dict[str, Function] = field(default_factory=dict)


class Lowerer:
    """Lowers statements into one :class:`Program`.

    A file is lowered by :meth:`run`. A session (:mod:`exprgrad.lower.session`) keeps one
    Lowerer for its whole life, lowers one statement at a time through :meth:`statement` and
    :meth:`lower_expr`, and overrides the extension points :meth:`param_node`,
    :meth:`outer_name` and :meth:`inline_extra`; :attr:`refs` collects the global names (functions,
    networks, parameters, data) a lowering used, so a session knows what to redo when one of them
    is redefined.
    """

    #: how an unknown name is described outside a def ("'x' is not defined here ...")
    top_level_where = "here (only numbers are allowed)"

    def __init__(self, text: str, filename: str) -> None:
        self.program = Program(filename, text, Graph())
        self.graph = self.program.graph
        self.defs_ahead: dict[str, Span] = {}
        self.calls = 0  # calls of functions with grad rules, numbering their dout
        self.current: str | None = None
        self.globals: dict[str, Span] = {}
        #: the file's compile-time constants (``N = 4``)
        self.constants: dict[str, float] = {}
        self.refs: set[str] = set()
        #: the network being made from a layer type, while its body is lowered
        self.scope: _Scope | None = None
        #: the layer types being made, outermost first (a layer may not contain itself)
        self.making: list[str] = []

    # ---- extension points (see the class docstring) ------------------------------------------
    def param_node(self, tensor: ParamTensor) -> Node:
        """The node a reference to ``tensor`` lowers to."""
        return tensor.node

    def outer_name(self, name: str, span: Span) -> Node | None:
        """A node for a name that is not local (None: look among the program's globals)."""
        return None

    def inline_extra(self, fn: Function, span: Span) -> dict[Node, Node]:
        """More replacements when a call of ``fn`` (at ``span``) is inlined, beyond its
        arguments."""
        return {}

    # ---- top level -----------------------------------------------------------------------
    def run(self, statements: list[Statement]) -> Program:
        for stmt in statements:
            if isinstance(stmt, Def):
                self.defs_ahead.setdefault(stmt.name, stmt.span)
        for stmt in statements:
            self.statement(stmt)
        self.check_generated_names()
        return self.program

    def statement(self, stmt: Statement) -> None:
        """Lower one top-level statement into the program."""
        if isinstance(stmt, Def):
            self._declare(stmt.name, stmt.span, "function")
            self.program.functions[stmt.name] = self.lower_def(stmt)
        elif isinstance(stmt, ParamDecl):
            self._declare(stmt.name, stmt.span, "parameter")
            self.lower_param(stmt)
            self._count_params(stmt.span)
        elif isinstance(stmt, NetDecl):
            self._declare(stmt.name, stmt.span, "network")
            self.lower_net(stmt)
            self._count_params(stmt.span)
        elif isinstance(stmt, ConstDecl):
            self._declare(stmt.name, stmt.span, "constant")
            self.constants[stmt.name] = self.const_number(stmt.value)
        elif isinstance(stmt, LayerDecl):
            self._declare(stmt.name, stmt.span, "layer")
            self.check_layer(stmt)
            self.program.layer_types[stmt.name] = stmt
        elif isinstance(stmt, DataDecl):
            self._declare(stmt.name, stmt.span, "data set")
            self.program.data[stmt.name] = self.eval_data(stmt.value)
            self.program.data_spans[stmt.name] = stmt.span
        elif isinstance(stmt, TrainDecl):
            if self.program.train is not None:
                raise ExprgradNameError("a file has at most one 'train' statement", stmt.span)
            self.program.train = stmt

    def _declare(self, name: str, span: Span, what: str) -> None:
        check_name(name, span, what)
        if name in self.globals:
            first = self.globals[name]
            raise ExprgradNameError(f"'{name}' is already defined (line {first.line})", span,
                                    hint="each function, parameter, network and data set needs "
                                    "its own name")
        self.globals[name] = span

    def check_generated_names(self) -> None:
        for fname, fn in self.program.functions.items():
            for suffix in filter(None, ENTRY_KINDS.values()):
                other = self.program.functions.get(fname + suffix)
                if other is not None:
                    raise ExprgradNameError(
                        f"'{fname}{suffix}' is the name of the generated {suffix[1:]} function of "
                        f"'{fname}' (line {fn.span.line})", other.span,
                        hint=f"rename it, e.g. '{fname}{suffix}1'")

    # ---- declarations --------------------------------------------------------------------
    def lower_param(self, stmt: ParamDecl, name: str | None = None) -> ParamTensor:
        """The tensor of ``param NAME[dims] = init``, added to the program; ``name`` is its
        full name (default: the statement's, for a file-level parameter)."""
        name = name or stmt.name
        shape = self.dims(stmt.shape)
        size = math.prod(shape)
        _check_size(size, stmt.span, f"parameter '{name}'")
        init = self._initializer(stmt.init, size)
        node = self.graph.make("param", (), name, shape)
        pattern = name + "".join(f".{{{k}}}" for k in range(len(shape)))
        tensor = ParamTensor(name, node, pattern, init)
        self._add_param(tensor)
        return tensor

    def dims(self, exprs: tuple[Expr, ...]) -> tuple[int, ...]:
        """The shape ``[2, N]`` gives: each dimension a whole number from 1, known at compile
        time (numbers and constants); at most two dimensions."""
        if len(exprs) > 2:
            raise ExprgradTypeError("values have at most two dimensions (vectors and matrices)",
                                    exprs[2][1])
        out = []
        for expr in exprs:
            size = _whole(self.lower_expr(expr, {}))
            if size is None or size < 1:
                raise ExprgradTypeError("a dimension is a whole number from 1, known at compile "
                                        "time", expr[1], hint="use numbers or constants ('N = 4' "
                                        "at file level, or a layer's arguments)")
            if size > MAX_TENSOR_ELEMENTS ** 2:  # (a smaller one: the tensor's check names it)
                raise ExprgradLimitError(f"a dimension of more than {MAX_TENSOR_ELEMENTS} "
                                         "(exprgrad.limits.MAX_TENSOR_ELEMENTS)", expr[1])
            out.append(size)
        return tuple(out)

    def _count_params(self, span: Span) -> None:
        if len(self.program.param_order) > MAX_PARAMS:
            raise ExprgradLimitError(f"the program has {len(self.program.param_order)} parameter "
                                     f"elements; the limit is {MAX_PARAMS} "
                                     "(exprgrad.limits.MAX_PARAMS)", span)

    def _add_param(self, tensor: ParamTensor, order: list[tuple[str, int]] | None = None) -> None:
        self.program.params[tensor.name] = tensor
        if order is None:
            order = [(tensor.name, i) for i in range(tensor.node.size)]
        self.program.param_order.extend(order)

    def _initializer(self, expr: Expr, size: int) -> list[tuple[str, float, float]]:
        if expr[0] == "call" and expr[2] in ("uniform", "normal"):
            if len(expr[3]) != 2 or expr[4]:
                raise ExprgradTypeError(f"{expr[2]}(a, b) takes two numbers", expr[1])
            a, b = (self.const_number(e) for e in expr[3])
            if expr[2] == "uniform" and not a < b:
                raise ExprgradValueError("uniform(lo, hi) needs lo < hi", expr[1])
            if expr[2] == "normal" and b < 0:
                raise ExprgradValueError("normal(mean, sd) needs sd >= 0", expr[1])
            if not all(map(math.isfinite, (a, b, b - a))):  # (a draw is lo + (hi - lo) * r)
                raise ExprgradValueError(f"{expr[2]}({a:g}, {b:g}) would draw infinite values",
                                         expr[1], hint="use finite bounds less than 1e308 apart")
            return [(expr[2], a, b)] * size
        values = flatten_values(self.eval_data(expr))
        if len(values) == 1:
            values = values * size
        if len(values) != size:
            raise ExprgradTypeError(f"the initial value has {len(values)} numbers; the parameter "
                                    f"has {size}", expr[1])
        return [("const", v, 0.0) for v in values]

    def lower_net(self, stmt: NetDecl) -> None:
        self.program.nets[stmt.name] = self.make_net(stmt, stmt.name)

    def make_net(self, stmt: NetDecl, name: str) -> Net:
        """The network ``net NAME = KIND(...)`` makes, its parameters added to the program;
        ``name`` is its full name (``r.inner`` inside a network ``r``)."""
        kinds = BUILTIN_NETS
        if stmt.kind in self.program.layer_types:
            return self._make_layer_net(stmt, name)
        if stmt.kind not in kinds:
            raise ExprgradNameError(f"unknown network kind '{stmt.kind}'", stmt.kind_span,
                                    hint=did_you_mean(stmt.kind, [*kinds,
                                                                  *self.program.layer_types])
                                    or "use MLP(nin, [sizes]), Layer(nin, nout), Neuron(nin) or "
                                    "a layer type of your own ('layer NAME(args):')")
        positional = [e for e in stmt.args if e[0] != "kw"]
        options = {e[2]: e for e in stmt.args if e[0] == "kw"}
        if len(positional) != kinds[stmt.kind]:
            raise ExprgradTypeError(f"{stmt.kind} takes {kinds[stmt.kind]} positional "
                                    f"argument(s), got {len(positional)}", stmt.kind_span)
        nin = self.const_int(positional[0])
        if stmt.kind == "MLP":
            sizes_expr = positional[1]
            if sizes_expr[0] != "list" or not sizes_expr[2]:
                raise ExprgradTypeError("MLP's second argument is a list of layer sizes, e.g. "
                                        "[4, 4, 1]", sizes_expr[1])
            nouts = [self.const_int(e) for e in sizes_expr[2]]
        elif stmt.kind == "Layer":
            nouts = [self.const_int(positional[1])]
        else:
            nouts = [1]
        act, out = "tanh", None
        for key, kw in options.items():
            value = kw[3]
            if key not in ("act", "out"):
                raise ExprgradNameError(f"unknown option '{key}'", kw[1],
                                        hint="options are act= and out=")
            if value[0] != "name" or value[2] not in ACTIVATIONS:
                raise ExprgradValueError(f"'{key}' must be one of {', '.join(ACTIVATIONS)}",
                                         value[1])
            if key == "act":
                act = value[2]
            else:
                out = value[2]
        for a, b in zip([nin, *nouts], nouts):
            _check_size(a * b, stmt.span, f"a layer of '{stmt.name}' ({a} x {b} weights)")
        net = declare_net(self.graph, name, stmt.kind, nin, nouts, act, out or act)
        for layer in net.layers:
            self.program.params[layer.weight.name] = layer.weight
            self.program.params[layer.bias.name] = layer.bias
        self.program.param_order.extend(net.order)
        return net

    # ---- layer types ---------------------------------------------------------------------
    def check_layer(self, layer: LayerDecl) -> None:
        """What can be checked of a layer type before it makes a network: its names, its
        ``forward`` def, the kinds of its inner networks."""
        seen: dict[str, Span] = {}
        items = [(name, span, "layer argument") for name, span in layer.args] + [
            (item.name, item.span, {ConstDecl: "constant", ParamDecl: "parameter",
                                    NetDecl: "network", Def: "function"}[type(item)])
            for item in layer.body]
        for name, span, what in items:
            check_name(name, span, what)
            if name in seen:
                raise ExprgradNameError(f"'{name}' is already defined in layer '{layer.name}' "
                                        f"(line {seen[name].line})", span)
            seen[name] = span
        for item in layer.body:
            if isinstance(item, NetDecl) and item.kind == layer.name:
                raise ExprgradTypeError(f"layer '{layer.name}' contains a network of its own "
                                        "type", item.kind_span,
                                        hint="a network is made of earlier layer types")
            if (isinstance(item, NetDecl) and item.kind not in BUILTIN_NETS
                    and item.kind not in self.program.layer_types):
                raise ExprgradNameError(f"unknown network kind '{item.kind}'", item.kind_span,
                                        hint=did_you_mean(item.kind, [*BUILTIN_NETS,
                                                                      *self.program.layer_types])
                                        or "declare a layer type before the layers that use it")
        if not any(isinstance(item, Def) and item.name == "forward" for item in layer.body):
            raise ExprgradTypeError(f"layer '{layer.name}' has no forward def", layer.span,
                                    hint="add 'def forward(x[n]):' to its body: what "
                                    "calling one of its networks computes")

    def _make_layer_net(self, stmt: NetDecl, name: str) -> Net:
        """A network of a user's layer type: the layer's body lowered with its arguments bound
        to the call's numbers, each parameter and inner network named under ``name``."""
        layer: LayerDecl = self.program.layer_types[stmt.kind]
        if layer.name in self.making:
            raise ExprgradTypeError(f"layer '{layer.name}' contains a network of its own type "
                                    f"(through {' -> '.join(self.making)})", stmt.kind_span)
        if len(self.making) >= MAX_LAYER_DEPTH:
            raise ExprgradLimitError(f"layers nested more than {MAX_LAYER_DEPTH} deep "
                                     "(exprgrad.limits.MAX_LAYER_DEPTH)", stmt.kind_span)
        if self.scope is None and self._networks_in(layer.name) > MAX_NETWORKS:
            raise ExprgradLimitError(f"a network of layer '{layer.name}' holds more than "
                                     f"{MAX_NETWORKS} networks (exprgrad.limits.MAX_NETWORKS)",
                                     stmt.kind_span, hint="each inner 'net' of a layer makes "
                                     "its networks again, in every network of the layer")
        scope = _Scope(name, self._layer_arguments(layer, stmt))
        outer, self.scope = self.scope, scope
        self.making.append(layer.name)
        tensors: list[str] = []
        try:
            for item in layer.body:
                if isinstance(item, ConstDecl):
                    scope.constants[item.name] = self.const_number(item.value)
                elif isinstance(item, ParamDecl):
                    scope.params[item.name] = self.lower_param(item, f"{name}.{item.name}")
                    tensors.append(f"{name}.{item.name}")
                elif isinstance(item, NetDecl):
                    scope.nets[item.name] = self.make_net(item, f"{name}.{item.name}")
                    tensors.extend(scope.nets[item.name].tensor_names)
                else:
                    # drawn collapsed, a network is one box: its outermost network's
                    saved, self.graph.group = self.graph.group, name.split(".", 1)[0]
                    try:
                        scope.functions[item.name] = self.lower_def(
                            dataclasses.replace(item, name=f"{name}.{item.name}"))
                    finally:
                        self.graph.group = saved
        except ExprgradError as err:
            inner = getattr(err, "network", None) or name  # the innermost network being made
            err.network = inner  # type: ignore[attr-defined]
            if outer is None:  # said once, by the outermost: which network, which statement
                made = (f"made by 'net {name} = {layer.name}(...)' on line {stmt.span.line}" +
                        (f", in its network '{inner}'" if inner != name else ""))
                err.hint = f"{err.hint}; {made}" if err.hint else made
            raise
        finally:
            self.scope = outer
            self.making.pop()
        return Net(name, layer.name, 0, [], forward=scope.functions["forward"], tensors=tensors)

    def _networks_in(self, kind: str) -> int:
        """How many networks one network of layer type ``kind`` is made of, itself included
        (counted over the layer types, not made: a layer of two layers of two layers ... is
        refused before it takes any time). At most MAX_NETWORKS + 1."""
        counts: dict[str, int] = {}
        order = [kind]  # each layer type after the ones it holds (they were declared earlier)
        seen = {kind}
        for name in order:
            for item in self.program.layer_types[name].body:
                if (isinstance(item, NetDecl) and item.kind in self.program.layer_types
                        and item.kind not in seen):
                    seen.add(item.kind)
                    order.append(item.kind)
        for name in reversed(order):
            inner = [counts.get(item.kind, 1) for item in self.program.layer_types[name].body
                     if isinstance(item, NetDecl)]
            counts[name] = min(MAX_NETWORKS + 1, 1 + sum(inner))
        return counts[kind]

    def _layer_arguments(self, layer: LayerDecl, stmt: NetDecl) -> dict[str, float]:
        """The numbers ``net r = Residual(4)`` binds to the layer's arguments (by position,
        then by name)."""
        names = [name for name, _ in layer.args]
        signature = f"{layer.name}({', '.join(names)})"
        positional = [e for e in stmt.args if e[0] != "kw"]
        if len(positional) > len(names):
            raise ExprgradTypeError(f"{signature} takes {len(names)} argument"
                                    f"{'s' if len(names) != 1 else ''}, got {len(positional)}",
                                    stmt.kind_span, hint=f"layer '{layer.name}' is defined on "
                                    f"line {layer.span.line}")
        values = {name: self.const_number(e) for name, e in zip(names, positional)}
        for kw in (e for e in stmt.args if e[0] == "kw"):
            if kw[2] not in names:
                raise ExprgradNameError(f"{signature} has no argument '{kw[2]}'", kw[1],
                                        hint=did_you_mean(kw[2], names))
            if kw[2] in values:
                raise ExprgradTypeError(f"'{kw[2]}' is given twice", kw[1])
            values[kw[2]] = self.const_number(kw[3])
        missing = [name for name in names if name not in values]
        if missing:
            raise ExprgradTypeError(f"{signature} needs {', '.join(repr(m) for m in missing)}",
                                    stmt.kind_span)
        return values


    def const_number(self, expr: Expr) -> float:
        node = self.lower_expr(expr, {})
        if node.op != "const" or node.shape != ():
            raise ExprgradTypeError("a number is needed here", expr[1])
        return float(node.attr)

    def const_int(self, expr: Expr) -> int:
        value = self.const_number(expr)
        if _whole_number(value) is None or value < 1 or value > 1_000_000:
            raise ExprgradValueError("a whole number from 1 to 1000000 is needed here", expr[1])
        return int(value)

    def eval_data(self, expr: Expr) -> Any:
        """A nested list of numbers (or a csv(...) call), evaluated with an explicit stack."""
        if expr[0] == "call" and expr[2] == "csv":
            return self._csv(expr)
        stack: list[tuple[Expr, bool]] = [(expr, False)]
        out: list[Any] = []
        while stack:
            e, done = stack.pop()
            if e[0] == "list" and not done:
                stack.append((e, True))
                stack.extend((item, False) for item in reversed(e[2]))
            elif e[0] == "list":
                n = len(e[2])
                items = out[len(out) - n:] if n else []
                del out[len(out) - n:]
                out.append(items)
            else:
                out.append(self.const_number(e))
        return out[0]

    def _csv(self, expr: Expr) -> list[Any]:
        args, kwargs = expr[3], {k: (v, s) for k, v, s in expr[4]}
        if len(args) != 1 or args[0][0] != "str":
            raise ExprgradTypeError('csv("file.csv", cols=[...]) takes a file name in double '
                                    "quotes", expr[1])
        if set(kwargs) - {"cols"}:
            raise ExprgradNameError("csv(...) takes one option, cols=", expr[1])
        base = Path(self.program.filename).parent if self.program.filename[:1] != "<" else Path()
        name = args[0][2]
        path = base / name
        inside = base.resolve() in path.resolve().parents  # links are followed, then checked
        if Path(name).is_absolute() or ".." in Path(name).parts or not inside:
            raise ExprgradValueError(f"csv({name!r}) names a file outside the .exg file's folder",
                                     args[0][1], hint="csv() reads files beside the .exg file "
                                     "or in folders below it; copy the data there")
        cols_expr = kwargs.get("cols", (None, None))[0]
        cols: list[int] | int | None = None
        if cols_expr is not None:
            cols = ([self._column(c) for c in cols_expr[2]] if cols_expr[0] == "list"
                    else self._column(cols_expr))
        try:
            rows = read_csv(path)
        except ExprgradValueError as err:  # shown at the csv(...) call, naming the data file
            message = err.message if str(path) in err.message else f"{path}: {err.message}"
            raise ExprgradValueError(message, args[0][1], hint=err.hint) from None
        result: list[Any] = []
        for number, values in rows:
            try:
                if cols is None:
                    result.append(values)
                elif isinstance(cols, int):
                    result.append(values[cols])
                else:
                    result.append([values[c] for c in cols])
            except IndexError:
                raise ExprgradValueError(f"{path.name} row {number} has only {len(values)} "
                                         "columns", expr[1]) from None
        return result

    def _column(self, expr: Expr) -> int:
        value = self.const_number(expr)
        if not (_whole_number(value) is not None and 0 <= value < 1_000_000):
            raise ExprgradValueError("a column is a whole number from 0 (the first column)",
                                     expr[1])
        return int(value)

    # ---- defs ----------------------------------------------------------------------------
    def lower_def(self, d: Def) -> Function:
        graph = self.graph
        self.current = d.name
        env: dict[str, Node] = {}
        inputs: list[Node] = []
        shapes: list[tuple[int, ...]] = []
        seen: dict[str, Span] = {}
        for i, arg in enumerate(d.args):
            check_name(arg.name, arg.span, "argument")
            if arg.name in seen:
                raise ExprgradNameError(f"argument '{arg.name}' appears twice", arg.span)
            seen[arg.name] = arg.span
            shape = self.dims(arg.shape)
            shapes.append(shape)
            _check_size(math.prod(shape), arg.span, f"argument '{arg.name}'")
            node = graph.make("input", (), (d.name, arg.name, i), shape)
            graph.name(node, arg.name)
            env[arg.name] = node
            inputs.append(node)
        outputs: list[Node] | None = None
        rules: list[tuple[Expr, dict[str, Node]]] = []
        work = list(reversed(d.body))  # a stack: for loops push their unrolled statements
        unrolled = 0
        while work:
            stmt = work.pop()
            if stmt[0] == "for":
                expanded = self._unroll(stmt, env, MAX_UNROLLED_STATEMENTS - unrolled, d.name)
                unrolled += len(expanded)
                work.extend(reversed(expanded))
                continue
            if outputs is not None:
                raise ExprgradTypeError("a statement after 'return' never runs", stmt[1],
                                        hint="'return' is the last statement of a def")
            graph.span = stmt[1]
            kind = stmt[0]
            if kind == "assign":
                _, span, name, expr, augop = stmt
                check_name(name, span, "variable")
                value = self.lower_expr(expr, env)
                if augop is not None:
                    if name not in env:
                        raise ExprgradNameError(f"'{name}' has no value yet to update with "
                                                f"'{augop}='", span, hint=f"write '{name} = ...' "
                                                "first")
                    value = self._apply(_BINOPS[augop], [env[name], value], span)
                env[name] = value
                graph.name(value, name)
            elif kind == "unpack":
                _, span, names, expr = stmt
                for name in names:
                    check_name(name, span, "variable")
                values = self._values(expr, env, len(names), span)
                for name, value in zip(names, values):
                    env[name] = value
                    graph.name(value, name)
            elif kind == "grad":
                _, span, name, expr = stmt
                if name not in seen:
                    raise ExprgradNameError(f"'grad {name}' names no argument of '{d.name}'", span,
                                            hint=did_you_mean(name, list(seen)))
                if any(r[0][2] == name for r in rules):
                    raise ExprgradNameError(f"a second rule for '{name}'", span)
                rules.append((stmt, dict(env)))
            else:
                outputs = [self.lower_expr(e, env) for e in stmt[2]]
        graph.span = None
        if outputs is None:
            raise ExprgradTypeError(f"'{d.name}' has no 'return'", d.span,
                                    hint="end the def with 'return EXPRESSION'")
        fn = Function(d.name, [a.name for a in d.args], shapes, inputs, outputs, d.span)
        if rules:
            self._attach_rules(fn, d, rules)
        fn.uses_params = any(n.op == "param" for n in reachable(fn.outputs))
        self.current = None
        if len(self.graph.nodes) > MAX_NODES:
            raise ExprgradError(f"the program creates {len(self.graph.nodes)} IR nodes; the limit "
                                f"is {MAX_NODES}", d.span)
        return fn

    def _attach_rules(self, fn: Function, d: Def, rules: list[tuple[Expr, dict[str, Node]]]
                      ) -> None:
        if len(fn.outputs) != 1:
            raise ExprgradTypeError("a function with 'grad' rules returns one value", d.span)
        by_name = {r[0][2]: r for r in rules}
        missing = [a for a in fn.arg_names if a not in by_name]
        if missing:
            raise ExprgradNameError(f"'{d.name}' has grad rules but none for "
                                    f"{', '.join(repr(m) for m in missing)}", d.span,
                                    hint="give every argument a 'grad NAME = ...' line")
        out = fn.outputs[0]
        hole = self.graph.make("hole", (), ("dout", d.name), out.shape)
        contributions: list[Node] = []
        spans: list[Span] = []
        for arg_name, shape in zip(fn.arg_names, fn.arg_shapes):
            stmt, env = by_name[arg_name]
            self.graph.span = stmt[1]
            node = self.lower_expr(stmt[3], {**env, "dout": hole})
            if node.shape != shape:
                raise ExprgradTypeError(f"the rule gives {_shape_words(node.shape)} but "
                                        f"'{arg_name}' is {_shape_words(shape)}", stmt[1])
            contributions.append(node)
            spans.append(stmt[1])
        self.graph.span = None
        # a rule gives gradients for the arguments only: a parameter's, in the body, would be
        # lost, and one in a rule has no value where the rule is used; refused anywhere
        used = sorted({n.attr for n in reachable([out, *contributions], all_args)
                       if n.op == "param"})
        if used:
            raise ExprgradTypeError(
                f"'{d.name}' has grad rules but uses the parameter{'s' if len(used) > 1 else ''} "
                f"{', '.join(repr(u) for u in used)}, whose gradient no rule can give", d.span,
                hint="pass the parameter in as an argument (and give it a grad rule)")
        n_in = len(fn.inputs)
        custom = self.graph.make("custom", (*fn.inputs, out, hole, *contributions),
                                 (n_in, tuple(spans)), out.shape)
        fn.outputs = [custom]
        fn.rule_spans = spans

    # ---- expressions ---------------------------------------------------------------------
    def lower_expr(self, expr: Expr, env: dict[str, Node]) -> Node:
        stack: list[tuple[Expr, bool]] = [(expr, False)]
        values: list[Node] = []
        while stack:
            e, done = stack.pop()
            kind = e[0]
            if not done:
                children = _children(e)
                if children:
                    stack.append((e, True))
                    stack.extend((c, False) for c in reversed(children))
                    continue
            n = len(_children(e))
            args = values[len(values) - n:] if n else []
            if n:
                del values[len(values) - n:]
            values.append(self._combine(e, kind, args, env))
        assert len(values) == 1, f"expression lowering left {len(values)} values"
        return values[0]

    def _combine(self, e: Expr, kind: str, args: list[Node], env: dict[str, Node]) -> Node:
        span = e[1]
        if kind == "num":
            if not math.isfinite(e[2]):
                raise ExprgradValueError(f"the number {e[3][:20]!s} is too large for a float",
                                         span, hint="numbers must be below 1.8e308")
            return self.graph.const(e[2])
        if kind == "name":
            return self._lookup(e[2], span, env)
        if kind == "str":
            raise ExprgradTypeError("text in double quotes is only for csv(\"file\")", span)
        if kind == "bin":
            return self._apply(_BINOPS[e[2]], args, span)
        if kind == "unary":
            return args[0] if e[2] == "+" else self._apply("neg", args, span)
        if kind == "list":
            return self._apply("stack", args, span)
        if kind == "index":
            node, rest = args[0], list(reversed(args[1:]))
            if any(sub[0] == "slice" for sub in e[3]):
                items = [(sub, [None if b is None else rest.pop() for b in sub[2:4]])
                         if sub[0] == "slice" else (sub, rest.pop()) for sub in e[3]]
                return self._slice(node, items)
            for sub, idx in zip(e[3], args[1:]):
                node = self._index(node, sub, idx)
            return node
        if kind == "call":
            return self._call(e, args, env)
        if kind == "kw":
            raise ExprgradTypeError("keyword arguments are only for networks and csv()", span)
        raise AssertionError(f"unknown expression kind {kind}")

    def _slice(self, node: Node, items: list[tuple[Expr, Any]]) -> Node:
        """``x[1:4]``, ``m[:, 0]``, ``m[2, :]``, ``m[0:2, 1:3]``: the elements picked by
        indices and constant slices (one item per axis, in order), stacked back into a vector or
        matrix of the slices' lengths. A slice must be non-empty and inside the axis."""
        if len(items) > len(node.shape):
            raise ExprgradTypeError(f"{len(items)} indices for {_shape_words(node.shape)}",
                                    items[len(node.shape)][0][1])
        picks: list[int | list[int]] = []
        for axis, (sub, value) in enumerate(items):
            n = node.shape[axis]
            if sub[0] != "slice":
                picks.append(self._position(value, sub, n))
                continue
            start, stop = (default if b is None else self._bound(b, e, n)
                           for b, e, default in zip(value, sub[2:4], (0, n)))
            if not 0 <= start < stop <= n:
                raise ExprgradTypeError(f"the slice {start}:{stop} is empty or outside an axis "
                                        f"of {n}", sub[1], hint=f"bounds run from 0 to {n}, "
                                        "the start before the stop")
            picks.append(list(range(start, stop)))

        def build(x: Node, k: int) -> Node:
            if k == len(picks):
                return x
            pick = picks[k]
            if isinstance(pick, int):
                return build(self._apply("index", [x], items[k][0][1], attr=pick), k + 1)
            return self._apply("stack", [build(self._apply("index", [x], items[k][0][1],
                                                           attr=i), k + 1) for i in pick],
                               items[k][0][1])

        return build(node, 0)

    def _bound(self, node: Node, expr: Expr, n: int) -> int:
        """A slice bound: a whole number known at compile time (negative counts from the end)."""
        k = _whole(node)
        if k is None:
            raise ExprgradTypeError("a slice bound must be a whole number known at compile time",
                                    expr[1])
        return k + n if k < 0 else k

    def _position(self, idx: Node, sub: Expr, n: int, axis: str | None = None) -> int:
        """An index along an axis of ``n`` (negative counts from the end); ``axis`` names it
        in the error (default: "an axis of n")."""
        i = _whole(idx)
        if i is None:
            raise ExprgradTypeError("an index must be a whole number known at compile time",
                                    sub[1])
        if not -n <= i < n:
            raise ExprgradTypeError(f"index {i} is out of range for {axis or f'an axis of {n}'}",
                                    sub[1], hint=f"indices run from 0 to {n - 1}")
        return i + n if i < 0 else i

    def _index(self, node: Node, sub: Expr, idx: Node) -> Node:
        if _whole(idx) is not None and node.shape == ():
            raise ExprgradTypeError("a scalar cannot be indexed", sub[1])
        i = self._position(idx, sub, node.shape[0] if node.shape else 0,
                           _shape_words(node.shape))
        return self._apply("index", [node], sub[1], attr=i)

    def _apply(self, op: str, args: Sequence[Node], span: Span, attr: Any = None) -> Node:
        try:
            return self.graph.apply(op, *args, attr=attr)
        except ShapeMismatch as err:
            raise ExprgradTypeError(str(err), span) from None

    def _lookup(self, name: str, span: Span, env: dict[str, Node]) -> Node:
        if name in env:
            return env[name]
        scope = self.scope
        if scope is not None and name in scope.constants:
            return self.graph.const(scope.constants[name])
        if scope is not None and name in scope.params:
            return self.param_node(scope.params[name])
        if scope is not None and (name in scope.nets or name in scope.functions):
            what = "network" if name in scope.nets else "function"
            raise ExprgradTypeError(f"'{name}' is a {what}; call it, e.g. '{name}(...)'", span)
        if name in self.constants:
            return self.graph.const(self.constants[name])
        if name == "pi":
            return self.graph.const(math.pi)
        outer = self.outer_name(name, span)
        if outer is not None:
            return outer
        if name in self.program.params:
            self.refs.add(name)
            return self.param_node(self.program.params[name])
        if name in self.program.nets:
            raise ExprgradTypeError(f"'{name}' is a network; call it, e.g. '{name}(x)'", span)
        if name in self.program.data:
            raise ExprgradTypeError(f"'{name}' is a data set; data feeds a function through "
                                    "'train' or the command line", span)
        if name in self.program.functions:
            raise ExprgradTypeError(f"'{name}' is a function; call it, e.g. '{name}(...)'", span)
        if name == "dout":
            raise ExprgradNameError("'dout' (the output's gradient) is only defined in a 'grad' "
                                    "rule", span)
        candidates = list(env) + list(self.program.params)
        if self.current is None:
            where = self.top_level_where
        elif name in self.defs_ahead:
            where = "yet"
        else:
            where = f"in '{self.current}'"
        raise ExprgradNameError(f"'{name}' is not defined" + (f" {where}" if where else ""), span,
                                hint=did_you_mean(name, candidates))

    def _call(self, e: Expr, args: list[Node], env: dict[str, Node]) -> Node:
        _, span, fname, arg_exprs, kwargs = e
        if kwargs and fname in AXIS_REDUCTIONS:
            return self._along_axis(fname, args, arg_exprs, kwargs, env, span)
        if kwargs:
            raise ExprgradTypeError(f"'{fname}' takes no keyword arguments", kwargs[0][2])
        if fname == "logsumexp" and len(args) == 1 and len(args[0].shape) == 2:
            return self._reduce("logsumexp", args[0], span)
        if fname in ("reshape", "flatten"):
            return self._reshape(fname, args, arg_exprs, span)
        if fname in REDUCTIONS and (fname in ("mean", "softmax") or len(args) == 1):
            return self._reduction(fname, args, arg_exprs, span)
        if fname in ("concat", "trace", "diag", "eye"):
            return self._matrix_helper(fname, args, arg_exprs, span)
        callee = self._callee(fname)
        if isinstance(callee, Function):
            return self._inline(callee, args, arg_exprs, span)
        if isinstance(callee, Net) and callee.forward is not None:
            outs = self._call_forward(callee, args, arg_exprs, span, fname)
            if len(outs) != 1:
                raise ExprgradTypeError(f"'{fname}' returns {len(outs)} values; unpack them, "
                                        f"e.g. 'a, b = {fname}(...)'", span)
            return outs[0]
        if isinstance(callee, Net):
            if len(args) != 1:
                raise ExprgradTypeError(f"network '{fname}' takes one input vector", span)
            x = args[0]
            if x.shape != (callee.nin,):
                raise ExprgradTypeError(f"network '{fname}' takes a vector [{callee.nin}], got "
                                        f"{_shape_words(x.shape)}", arg_exprs[0][1])
            return call_net(self.graph, callee, x, self.param_node)
        if fname in BUILTINS:
            op = BUILTINS[fname]
            arity = OPS[op].arity
            if arity is not None and len(args) != arity:
                raise ExprgradTypeError(f"{fname}() takes {arity} argument"
                                        f"{'s' if arity != 1 else ''}, got {len(args)}", span)
            return self._apply(op, args, span)
        if fname == self.current:
            raise ExprgradTypeError(f"'{fname}' calls itself; recursion is not supported", span,
                                    hint="exprgrad compiles to straight-line code")
        if fname in self.defs_ahead:
            raise ExprgradNameError(f"'{fname}' is defined later in the file (line "
                                    f"{self.defs_ahead[fname].line})", span,
                                    hint="define a function before the functions that call it")
        if fname in env or fname in self.program.params or fname in self.program.data:
            raise ExprgradTypeError(f"'{fname}' is not a function", span)
        if fname in self.program.layer_types:
            raise ExprgradTypeError(f"'{fname}' is a layer type; call a network made of it",
                                    span, hint=f"declare one at file level, e.g. 'net "
                                    f"{fname.lower()}1 = {fname}(...)', and call that")
        known = list(BUILTINS) + list(self.program.functions) + list(self.program.nets)
        raise ExprgradNameError(f"unknown function '{fname}'", span,
                                hint=did_you_mean(fname, known))

    def _call_forward(self, net: Net, args: list[Node], arg_exprs: list[Expr], span: Span,
                      called: str) -> list[Node]:
        """The results of ``called(...)``, a network of a user's layer type: its forward,
        inlined (drawn collapsed, as one box: the outermost network's)."""
        assert net.forward is not None
        saved, self.graph.group = self.graph.group, self.graph.group or net.name
        try:
            return self._inline_all(net.forward, args, arg_exprs, span, called)
        finally:
            self.graph.group = saved

    def _callee(self, fname: str) -> Function | Net | None:
        """What ``fname(...)`` calls: a def or a network of the layer being made, else of the
        file (None: neither)."""
        scope = self.scope
        if scope is not None and fname in scope.functions:
            return scope.functions[fname]
        if scope is not None and fname in scope.nets:
            return scope.nets[fname]
        if fname in self.program.functions or fname in self.program.nets:
            self.refs.add(fname)
        return self.program.functions.get(fname) or self.program.nets.get(fname)

    def _unroll(self, stmt: Expr, env: dict[str, Node], budget: int, fname: str | None
                ) -> list[Expr]:
        """``for i in range(a, b):`` as its statements, repeated, each time after ``i = k``;
        the bounds must be whole numbers known at compile time (constants, numbers, outer loop
        variables). More than ``budget`` statements is refused before any is made. ``fname``
        is the def's name (None: a loop typed in a session)."""
        _, span, var, start_expr, stop_expr, body = stmt
        check_name(var, span, "loop variable")
        bounds = self._bounds(stmt, env)
        if bounds is None:
            expr = next(e for e in (start_expr, stop_expr)
                        if _whole(self.lower_expr(e, env)) is None)
            raise ExprgradTypeError("a loop bound must be a whole number known at compile "
                                    "time", expr[1], hint="use numbers, constants ('N = 4' "
                                    "at file level) or an outer loop's variable")
        stack = list(body)
        while stack:
            inner = stack.pop()
            if inner[0] == "return":
                raise ExprgradTypeError("'return' inside a for loop", inner[1],
                                        hint="return after the loop")
            if inner[0] == "for":
                stack.extend(inner[5])
        iterations = range(*bounds)
        if self._unrolled_size(stmt, env, budget) > budget:
            loops = f"the for loops of '{fname}' unroll" if fname else "this for loop unrolls"
            raise ExprgradLimitError(
                f"{loops} into more than {MAX_UNROLLED_STATEMENTS} "
                "statements (exprgrad.limits.MAX_UNROLLED_STATEMENTS)", span)
        out: list[Expr] = []
        for k in iterations:
            out.append(("assign", span, var, ("num", span, float(k), str(k)), None))
            out.extend(body)
        return out

    def _bounds(self, stmt: Expr, env: dict[str, Node]) -> tuple[int, int] | None:
        """The bounds of a for loop when they are whole numbers known here, else None."""
        start, stop = (_whole(self.lower_expr(e, env)) for e in stmt[3:5])
        return None if start is None or stop is None else (start, stop)

    def _unrolled_size(self, stmt: Expr, env: dict[str, Node], budget: int, depth: int = 0
                       ) -> int:
        """About how many statements the for loop ``stmt`` unrolls into, known before any is
        made: its iterations times its body, an inner loop counted at the larger of its sizes
        at the outer variable's first and last values (exact for bounds linear in it); an inner
        loop whose bounds use what the body computes counts one statement (it is checked when
        reached), and so does one nested more than 32 deep. Stops counting past ``budget``."""
        bounds = self._bounds(stmt, env) if depth <= 32 else None
        if bounds is None:
            return 1
        count = max(0, bounds[1] - bounds[0])
        if count == 0:
            return 1
        size = 1
        for inner in stmt[5]:
            if inner[0] != "for":
                size += 1
                continue
            sizes = []
            for k in {bounds[0], bounds[1] - 1}:
                try:
                    sizes.append(self._unrolled_size(
                        inner, {**env, stmt[2]: self.graph.const(float(k))}, budget,
                        depth + 1))
                except ExprgradError:  # (bounds that need the body: counted when reached)
                    sizes.append(1)
            size += max(sizes)
            if size > budget:
                break
        return count * size if count <= budget else budget + 1

    def _reduction(self, fname: str, args: list[Node], arg_exprs: list[Expr], span: Span
                   ) -> Node:
        """mean, softmax, and max or min of one vector or matrix, written with the op table's
        ops: ``sum(v) / n``; ``exp(v - logsumexp(v))``; a chain of two-argument max or min
        (a tie goes to the earlier element, as for two numbers)."""
        v = args[0] if len(args) == 1 else None
        if v is None or v.shape == () or (fname == "softmax" and len(v.shape) != 1):
            got = (f"{len(args)} arguments" if len(args) != 1 else
                   f"{_shape_words(args[0].shape)}")
            raise ExprgradTypeError(f"{fname}() takes {REDUCTIONS[fname]}, got {got}", span,
                                    hint="softmax(m, axis=0) or softmax(m, axis=1) normalises "
                                    "a matrix's columns or rows" if fname == "softmax"
                                    and v is not None and len(v.shape) == 2 else None)
        return self._reduce(fname, v, span)

    def _reduce(self, fname: str, v: Node, span: Span) -> Node:
        """One of :data:`AXIS_REDUCTIONS` over all of ``v`` (a vector, or a matrix except for
        softmax): ``sum`` itself, ``logsumexp`` of the elements, ``mean`` as ``sum(v) / n``,
        ``softmax`` as ``exp(v - logsumexp(v))``, ``max`` and ``min`` as a chain of two-argument
        max or min (a tie goes to the earlier element, as for two numbers)."""
        if fname == "sum":
            return self._apply("sum", [v], span)
        if fname == "mean":
            return self._apply("div", [self._apply("sum", [v], span),
                                       self.graph.const(float(v.size))], span)
        if fname == "softmax":
            lse = self._apply("logsumexp", [v], span)
            return self._apply("exp", [self._apply("sub", [v, lse], span)], span)
        if fname == "logsumexp":
            return self._apply("logsumexp", [self._reshaped(v, (v.size,), span)], span)
        elems = self._elements(v, span)
        out = elems[0]
        for e in elems[1:]:
            out = self._apply(fname, [out, e], span)
        return out

    def _elements(self, x: Node, span: Span) -> list[Node]:
        """The elements of ``x`` in row-major order (a scalar is its own one element)."""
        out = [x]
        for _ in x.shape:
            out = [self._apply("index", [y], span, attr=i) for y in out
                   for i in range(y.shape[0])]
        return out

    def _along_axis(self, fname: str, args: list[Node], arg_exprs: list[Expr],
                    kwargs: list[tuple[str, Expr, Span]], env: dict[str, Node], span: Span
                    ) -> Node:
        """``sum(m, axis=k)`` and the other :data:`AXIS_REDUCTIONS` with ``axis=``, written with
        index, stack, transpose and the reduction of one vector. Of a matrix [r, c]: axis 0
        reduces each column (a vector [c]), axis 1 each row (a vector [r]); softmax keeps the
        shape, normalising each column or each row. Of a vector, axis 0 (or -1) is the whole
        vector. Negative axes count from the end, as in numpy."""
        example = f"e.g. {fname}(m, axis=1)"
        axis: Expr | None = None
        for name, value, kw_span in kwargs:
            if name != "axis":
                raise ExprgradTypeError(f"{fname}() takes no keyword '{name}'", kw_span,
                                        hint=f"its one keyword is axis=, {example}")
            if axis is not None:
                raise ExprgradTypeError("axis= is given twice", kw_span)
            axis = value
        assert axis is not None
        if len(args) != 1:
            raise ExprgradTypeError(f"{fname}(x, axis=k) takes one vector or matrix, got "
                                    f"{len(args)} arguments", span, hint=example)
        x = args[0]
        k = _whole(self.lower_expr(axis, env))
        if k is None:
            raise ExprgradTypeError("an axis must be a whole number known at compile time",
                                    axis[1], hint="axis=0 reduces each column of a matrix, "
                                    "axis=1 each row")
        rank = len(x.shape)
        if rank == 0:
            raise ExprgradTypeError(f"{fname}(x, axis={k}) needs a vector or a matrix, got a "
                                    "scalar", arg_exprs[0][1], hint="a scalar has no axis; "
                                    "drop axis=")
        if not -rank <= k < rank:
            raise ExprgradTypeError(f"axis {k} is out of range for {_shape_words(x.shape)}",
                                    axis[1], hint="a vector has axis 0 (or -1)" if rank == 1
                                    else "a matrix has axes 0 and 1 (or -2 and -1)")
        if rank == 1:
            return self._reduce(fname, x, span)
        k %= rank
        m = x if k == 1 else self._apply("transpose", [x], span)  # reduce m's rows
        rows = [self._apply("index", [m], span, attr=i) for i in range(m.shape[0])]
        if fname == "mean":  # the sums, then one division
            sums = self._apply("stack", [self._reduce("sum", row, span) for row in rows], span)
            return self._apply("div", [sums, self.graph.const(float(m.shape[1]))], span)
        out = self._apply("stack", [self._reduce(fname, row, span) for row in rows], span)
        return self._apply("transpose", [out], span) if fname == "softmax" and k == 0 else out

    def _reshape(self, fname: str, args: list[Node], arg_exprs: list[Expr], span: Span
                 ) -> Node:
        """``reshape(x, [r, c])``, ``reshape(x, [n])`` (one dimension may be -1: what the
        others leave) and ``flatten(x)``: the elements of ``x`` in row-major order, as numpy,
        stacked into the new shape (rank at most 2, the same number of elements)."""
        if fname == "flatten":
            if len(args) != 1:
                raise ExprgradTypeError(f"flatten() takes one argument, got {len(args)}", span)
            return self._reshaped(args[0], (args[0].size,), span)
        example = "e.g. reshape(v, [2, 3]) or reshape(m, [6])"
        if len(args) != 2:
            raise ExprgradTypeError(f"reshape() takes a value and a shape, got {len(args)} "
                                    f"argument{'s' if len(args) != 1 else ''}", span,
                                    hint=example)
        x, shape, where = args[0], args[1], arg_exprs[1][1]
        if len(shape.shape) != 1:
            raise ExprgradTypeError(f"reshape()'s shape is a list of one or two sizes, got "
                                    f"{_shape_words(shape.shape)}", where, hint=example)
        if shape.shape[0] > 2:
            raise ExprgradTypeError(f"values have rank at most 2; the shape asks for "
                                    f"{shape.shape[0]} dimensions", where, hint=example)
        items = shape.args if shape.op == "stack" else [shape] * shape.shape[0]
        dims = [_whole_number(float(d.attr)) if d.op == "const" else None for d in items]
        known = [d for d in dims if d is not None and d >= 1]
        if None in dims or len(known) + dims.count(-1) != len(dims) or dims.count(-1) > 1:
            raise ExprgradTypeError("reshape()'s sizes must be whole numbers from 1 known at "
                                    "compile time (one may be -1: what the others leave)",
                                    where, hint=example)
        sizes = [d for d in dims if d is not None]  # (all of them)
        if -1 in sizes and x.size % math.prod(known) == 0:
            sizes[sizes.index(-1)] = x.size // math.prod(known)
        if -1 in sizes or math.prod(sizes) != x.size:
            asked = "[" + ", ".join(map(str, sizes)) + "]"
            raise ExprgradTypeError(f"reshape() cannot turn {_shape_words(x.shape)} ("
                                    f"{x.size} element{'s' if x.size != 1 else ''}) into "
                                    f"{asked}", where, hint="the number of elements stays the "
                                    "same; they are read row by row, as in numpy")
        return self._reshaped(x, tuple(sizes), span)

    def _reshaped(self, x: Node, shape: tuple[int, ...], span: Span) -> Node:
        """``x`` with its elements (row-major) stacked into ``shape``, of the same size."""
        if x.shape == shape:
            return x
        elems = self._elements(x, span)
        if len(shape) == 2:
            cols = shape[1]
            elems = [self._apply("stack", elems[i * cols:(i + 1) * cols], span)
                     for i in range(shape[0])]
        return self._apply("stack", elems, span)

    def _matrix_helper(self, fname: str, args: list[Node], arg_exprs: list[Expr], span: Span
                       ) -> Node:
        """concat(a, b, ...) of vectors, trace(m) and diag(m) of a square matrix, diag(v) (the
        matrix with v on its diagonal) and eye(n): written with index, stack and constants."""
        def index(x: Node, i: int) -> Node:
            return self._apply("index", [x], span, attr=i)

        if fname == "concat":
            if not args or any(len(a.shape) != 1 for a in args):
                raise ExprgradTypeError("concat() takes one or more vectors, got "
                                        + ", ".join(_shape_words(a.shape) for a in args), span)
            return self._apply("stack", [index(a, i) for a in args for i in range(a.shape[0])],
                               span)
        if fname == "eye":
            n = (_whole(args[0]) if len(args) == 1 else None) or 0
            if not 1 <= n <= 1000:
                raise ExprgradTypeError("eye(n) takes a whole number n from 1 to 1000, known at "
                                        "compile time", span)
            return self._apply("stack", [self._apply("stack", [
                self.graph.const(float(i == j)) for j in range(n)], span) for i in range(n)], span)
        if len(args) != 1:
            raise ExprgradTypeError(f"{fname}() takes one argument, got {len(args)}", span)
        a = args[0]
        square = len(a.shape) == 2 and a.shape[0] == a.shape[1]
        if fname == "diag" and len(a.shape) == 1:
            zero = self.graph.const(0.0)
            n = a.shape[0]
            return self._apply("stack", [self._apply("stack", [
                index(a, i) if i == j else zero for j in range(n)], span) for i in range(n)], span)
        if not square:
            raise ExprgradTypeError(f"{fname}() takes a square matrix"
                                    + (" or a vector" if fname == "diag" else "")
                                    + f", got {_shape_words(a.shape)}", span)
        diagonal = [index(index(a, i), i) for i in range(a.shape[0])]
        if fname == "diag":
            return self._apply("stack", diagonal, span)
        return self._apply("sum", [self._apply("stack", diagonal, span)], span)

    def _values(self, expr: Expr, env: dict[str, Node], count: int, span: Span) -> list[Node]:
        """The ``count`` values ``a, b = expr`` binds: as many expressions (``a, b = x, y``),
        the results of a def returning that many values, or the elements of a vector of that
        length."""
        if expr[0] == "tuple":
            if len(expr[2]) != count:
                raise ExprgradTypeError(f"{count} names and {len(expr[2])} values", span)
            return [self.lower_expr(e, env) for e in expr[2]]
        callee = self._callee(expr[2]) if expr[0] == "call" and not expr[4] else None
        fn = callee.forward if isinstance(callee, Net) else callee
        if fn is not None:
            args = [self.lower_expr(a, env) for a in expr[3]]
            outs = (self._call_forward(callee, args, expr[3], expr[1], expr[2])
                    if isinstance(callee, Net) else self._inline_all(fn, args, expr[3], expr[1]))
            if len(outs) == 1 and outs[0].shape == (count,):  # one vector of `count` elements
                return [self._apply("index", outs, span, attr=i) for i in range(count)]
            if len(outs) != count:
                raise ExprgradTypeError(f"'{expr[2]}' returns {len(outs)} value"
                                        f"{'s' if len(outs) != 1 else ''}, not {count}", span,
                                        hint=f"'{expr[2]}' is defined on line {fn.span.line}")
            return outs
        value = self.lower_expr(expr, env)
        if value.shape != (count,):
            raise ExprgradTypeError(f"{count} names need {count} values: a def returning "
                                    f"{count}, or a vector [{count}], not "
                                    f"{_shape_words(value.shape)}", span)
        return [self._apply("index", [value], span, attr=i) for i in range(count)]

    def _inline(self, fn: Function, args: list[Node], arg_exprs: list[Expr], span: Span) -> Node:
        outs = self._inline_all(fn, args, arg_exprs, span)
        if len(outs) != 1:
            raise ExprgradTypeError(f"'{fn.name}' returns {len(outs)} values; unpack them, "
                                    f"e.g. 'a, b = {fn.name}(...)'", span)
        return outs[0]

    def _inline_all(self, fn: Function, args: list[Node], arg_exprs: list[Expr], span: Span,
                    called: str | None = None) -> list[Node]:
        """The results of ``fn`` at ``args``, its body inlined; ``called`` is the name the
        call used, for messages (default: the function's)."""
        called = called or fn.name
        if len(args) != len(fn.inputs):
            raise ExprgradTypeError(f"'{called}' takes {len(fn.inputs)} argument"
                                    f"{'s' if len(fn.inputs) != 1 else ''}, got {len(args)}",
                                    span, hint=f"'{called}({', '.join(fn.arg_names)})' is "
                                    f"defined on line {fn.span.line}")
        for arg, shape, expr in zip(args, fn.arg_shapes, arg_exprs):
            if arg.shape != shape:
                raise ExprgradTypeError(f"'{called}' takes {_shape_words(shape)} here, got "
                                        f"{_shape_words(arg.shape)}", expr[1])
        mapping = dict(zip(fn.inputs, args))
        mapping.update(self.inline_extra(fn, span))
        if fn.rule_spans:  # each call's rules get their own dout: differentiating one call
            # (substituting its dout) must not rewrite another call's rules (Hessians)
            custom = fn.outputs[0]
            hole = custom.args[custom.attr[0] + 1]
            self.calls += 1
            mapping[hole] = self.graph.make("hole", (), (*hole.attr, self.calls), hole.shape)
        return substitute(self.graph, fn.outputs, mapping)


def _check_size(size: int, span: Span, what: str) -> None:
    if size > MAX_TENSOR_ELEMENTS:
        raise ExprgradLimitError(f"{what} has {size} elements; the limit is "
                                 f"{MAX_TENSOR_ELEMENTS} (exprgrad.limits.MAX_TENSOR_ELEMENTS)",
                                 span)


def _whole_number(value: float) -> int | None:
    """``value`` as an int when it is a whole number (not nan, not infinite), else None."""
    return int(value) if math.isfinite(value) and value == int(value) else None


def _whole(node: Node) -> int | None:
    """The value of ``node`` when it is a whole number known at compile time (a scalar
    constant), else None: what indices, slice and loop bounds and ``eye(n)`` need."""
    return _whole_number(float(node.attr)) if node.op == "const" and node.shape == () else None


def _children(e: Expr) -> list[Expr]:
    kind = e[0]
    if kind == "bin":
        return [e[3], e[4]]
    if kind == "unary":
        return [e[3]]
    if kind == "list":
        return list(e[2])
    if kind == "index":  # (a slice's bounds, where given, stand for the slice)
        return [e[2], *(x for sub in e[3] for x in ((sub[2], sub[3]) if sub[0] == "slice"
                                                    else (sub,)) if x is not None)]
    if kind == "call":
        return list(e[3])
    return []


def _shape_words(shape: tuple[int, ...]) -> str:
    if shape == ():
        return "a scalar"
    if len(shape) == 1:
        return f"a vector [{shape[0]}]"
    return "a matrix [" + ", ".join(map(str, shape)) + "]"


def flatten_values(value: Any) -> list[float]:
    """A number or nested lists of numbers as a flat list of floats (row-major, iterative)."""
    out: list[float] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(reversed(v))
        else:
            out.append(float(v))
    return out

