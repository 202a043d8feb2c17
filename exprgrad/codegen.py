"""IR to straight-line Python source (the scalar backend).

Contract: :func:`generate` returns the text of a module that needs only ``math`` (and ``random``
for ``init_params`` when the program has parameters). For every ``def f`` it defines

- ``f(...)``: the value(s) of ``f``;
- ``f_grad(...)``: ``(value, grads)``, the value and the gradient (see ``docs/generated.md``);
- ``f_grad_sum(params, ...)``: for a scalar function of parameters (a loss), the value and the
  parameter gradient summed over a batch, each argument holding one value per example: one loop
  in generated code instead of a call per example;
- ``f_hess(...)``: ``(value, grads, hessian)`` when Hessians are requested.

The text is deterministic (same program, byte-identical output). No text from the ``.exg``
source reaches it except identifiers the frontend validated (mangled where they would shadow a
name the module uses) and numbers printed here with ``repr``. Every statement performs one
operation, so CPython's compiler never meets a deeply nested expression; a comment names the
``.exg`` line each block came from. Tensor nodes are unrolled into scalar statements here, and
the statement count is bounded by :data:`exprgrad.limits.MAX_SCALAR_STATEMENTS`.
"""

from __future__ import annotations

import builtins
import hashlib
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__
from .diff import grad, hessian
from .errors import ExprgradLimitError
from .ir import Graph, Node, no_gc, reachable
from .limits import MAX_SCALAR_STATEMENTS
from .lower import GENERATED_NAMES, Function, Program
from .ops import HELPERS, OPS

Elem = Any  # a Python expression string (a name) or a float constant

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PY_NAMES = frozenset(dir(builtins)) | GENERATED_NAMES


def fmt_const(value: float) -> str:
    """Print a float so that Python reads back exactly that float (inf and nan via math)."""
    if math.isnan(value):
        return "math.nan"
    if math.isinf(value):
        return "math.inf" if value > 0 else "(-math.inf)"
    text = repr(float(value))
    return f"({text})" if text.startswith("-") else text


def safe_label(text: str) -> str:
    """A file name reduced to characters that are harmless in a comment and a string literal."""
    name = text.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in name)
    return cleaned[:100] or "_"


def ident_part(text: str) -> str:
    """A user name (possibly dotted, like n.layers.0.w) as an identifier fragment."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


class PyAlgebra:
    """Element algebra that prints one statement per scalar operation (see ops.Algebra)."""

    def __init__(self, budget: int) -> None:
        self.stmts: list[list[Any]] = []  # [target, expression, source line]
        self.helpers: set[str] = set()
        self.uses_math = False
        self.line: int | None = None
        self.budget = budget
        self._counter = 0
        self.taken: set[str] = set()

    def fresh(self, base: str = "t") -> str:
        while True:
            self._counter += 1
            name = f"_{base}{self._counter}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def scalar(self, op: str, args: Sequence[Elem], attr: Any = None) -> Elem:
        spec = OPS[op]
        if all(isinstance(a, float) for a in args):
            assert spec.ref is not None, f"{op} has no reference implementation"
            return float(spec.ref(*args))
        simpler = _identity(op, args)
        if simpler is not None:
            return simpler
        consts = [a if isinstance(a, float) else None for a in args]
        texts = [fmt_const(a) if isinstance(a, float) else a for a in args]
        assert spec.py is not None, f"{op} has no Python emitter"
        expr = spec.py(texts, consts)
        for helper in spec.helpers:
            if helper in expr:
                self.helpers.add(helper)
        if "math." in expr:
            self.uses_math = True
        target = self.fresh()
        self.stmts.append([target, expr, self.line])
        if len(self.stmts) > self.budget:
            raise ExprgradLimitError(
                f"the scalar backend would write more than {self.budget} statements for this "
                "function (exprgrad.limits.MAX_SCALAR_STATEMENTS)",
                hint="compile with --backend numpy, which writes one array operation per "
                "tensor op, or make the network smaller")
        return target

    def zero(self) -> Elem:
        return 0.0


def _identity(op: str, args: Sequence[Elem]) -> Elem | None:
    """Exact element-level identities: x+0, 0+x, x-0, x*1, 1*x, x*0 (strong zero), x/1."""
    if op == "add":
        if args[1] == 0.0 and isinstance(args[1], float):
            return args[0]
        if args[0] == 0.0 and isinstance(args[0], float):
            return args[1]
    elif op == "sub" and isinstance(args[1], float) and args[1] == 0.0:
        return args[0]
    elif op == "mul":
        for a, b in ((args[0], args[1]), (args[1], args[0])):
            if isinstance(b, float) and b == 1.0:
                return a
            if isinstance(b, float) and b == 0.0:
                return 0.0
    elif op == "div" and isinstance(args[1], float) and args[1] == 1.0:
        return args[0]
    return None


def _shape_elems(names: list[Elem], shape: tuple[int, ...]) -> str:
    """A tensor's elements as a Python list display (nested for a matrix)."""
    texts = [fmt_const(e) if isinstance(e, float) else e for e in names]
    if shape == ():
        return texts[0]
    if len(shape) == 1:
        return "[" + ", ".join(texts) + "]"
    m, n = shape
    return "[" + ", ".join("[" + ", ".join(texts[i * n:(i + 1) * n]) + "]" for i in range(m)) + "]"


def _unpack_target(names: list[str], shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"
    m, n = shape
    rows = ["(" + ", ".join(names[i * n:(i + 1) * n]) + ("," if n == 1 else "") + ")"
            for i in range(m)]
    return "(" + ", ".join(rows) + ("," if m == 1 else "") + ")"


class ModuleWriter:
    """Accumulates the functions of one generated module."""

    def __init__(self, program: Program, budget: int = MAX_SCALAR_STATEMENTS) -> None:
        self.program = program
        self.graph: Graph = program.graph
        self.budget = budget
        self.helpers: set[str] = set()
        self.uses_math = False
        self.chunks: list[str] = []
        self.statements = 0

    # ---- naming ------------------------------------------------------------------------
    def arg_names(self, fn: Function) -> list[str]:
        """The signature's names: a user name that would shadow a builtin or a name the module
        uses gets a suffix (``list`` -> ``list_``, then ``list_2``, ...), avoiding every other
        argument's name and never forming a double underscore."""
        used = set(fn.arg_names)
        out = []
        for name in fn.arg_names:
            mangled, k = name, 1
            while mangled in _PY_NAMES or (mangled != name and mangled in used):
                mangled = f"{name}_" if k == 1 else f"{name}_{k}"
                k += 1
            used.add(mangled)
            out.append(mangled)
        return out

    # ---- one function --------------------------------------------------------------------
    def emit(self, name: str, fn: Function, roots: list[Node],
             returns: Callable[[list[list[Elem]]], str], doc: str, with_params: bool,
             summed: Callable[[list[list[Elem]]], tuple[Elem, list[Elem]]] | None = None
             ) -> None:
        """Emit ``def name(...)`` computing ``roots``; ``returns`` prints the return value.

        With ``summed`` (which picks the value and the flat gradient out of the roots'
        elements), also emit ``name + "_sum"``: the same statements in a loop over a batch,
        accumulating the value and the gradient.
        """
        try:
            self._emit(name, fn, roots, returns, doc, with_params, summed)
        except ExprgradLimitError as err:
            err.span = err.span or fn.span
            err.lineno, err.offset = err.span.line, err.span.col
            raise err.with_source(self.program.filename, self.program.source) from None

    def _emit(self, name: str, fn: Function, roots: list[Node],
              returns: Callable[[list[list[Elem]]], str], doc: str, with_params: bool,
              summed: Callable[[list[list[Elem]]], tuple[Elem, list[Elem]]] | None) -> None:
        alg = PyAlgebra(self.budget - self.statements)
        env: dict[int, list[Elem]] = {}
        sig = self.arg_names(fn)
        arg_sig = list(sig)
        unpack: list[str] = []  # the arguments' elements
        prologue: list[str] = []  # the parameters' elements
        for node, pyname, shape in zip(fn.inputs, sig, fn.arg_shapes):
            if shape == ():
                env[node.id] = [pyname]
            else:
                names = [f"_{ident_part(node.attr[1])}_{i}" for i in range(node.size)]
                alg.taken.update(names)
                env[node.id] = names
                unpack.append(f"{_unpack_target(names, shape)} = {pyname}")
        alg.taken.update(sig)
        if with_params:
            flat = []
            stems = {t: f"_{ident_part(t)}" for t in self.program.params}
            for pt in self.program.params.values():
                env[pt.node.id] = [""] * pt.node.size
            for tensor, index in self.program.param_order:
                pt = self.program.params[tensor]
                shape = pt.node.shape
                suffix = (f"_{index // shape[1]}_{index % shape[1]}" if len(shape) == 2 else
                          f"_{index}" if shape else "")
                elem = stems[tensor] + suffix
                env[pt.node.id][index] = elem
                flat.append(elem)
            alg.taken.update(flat)
            prologue.append(f"    {_unpack_target(flat, (len(flat),))} = params")
            sig = ["params", *sig]
        named: dict[str, int] = {}
        for node in reachable(roots):
            if node.id in env:
                continue
            if node.op == "const":
                env[node.id] = [float(node.attr)] * node.size
                continue
            if node.op == "custom":
                env[node.id] = env[node.args[node.attr[0]].id]
                continue
            assert node.op not in ("input", "param", "hole"), f"unbound leaf {node!r}"
            span = self.graph.spans.get(node.id)
            alg.line = span.line if span else None
            start = len(alg.stmts)
            spec = OPS[node.op]
            assert spec.unroll is not None, f"{node.op} cannot be unrolled"
            elems = spec.unroll(alg, node.op, [env[a.id] for a in node.args], node.attr,
                                [a.shape for a in node.args], node.shape)
            user = self.graph.names.get(node.id)
            if user is not None and len(alg.stmts) > start:
                elems = self._rename(alg, start, elems, ident_part(user), named, node.size)
            env[node.id] = elems
        elems = [env[r.id] for r in roots]
        returned = returns(elems)
        stmts = [list(s) for s in alg.stmts] if summed else alg.stmts
        body = _fuse(_dce(alg.stmts, returned), returned)
        lines = [f"def {name}({', '.join(sig)}):", f'    """{doc}"""',
                 *(f"    {u}" for u in unpack), *prologue, *_body_lines(body, "    ")]
        lines.append("    return " + returned)
        self.chunks.append("\n".join(lines))
        self.statements += len(body)
        if summed:
            self.chunks.append(self._summed(name, stmts, summed(elems), alg, sig, arg_sig,
                                            prologue, unpack, fn))
        self.helpers |= alg.helpers
        self.uses_math = self.uses_math or alg.uses_math

    def _summed(self, name: str, stmts: list[list[Any]], picked: tuple[Elem, list[Elem]],
                alg: PyAlgebra, sig: list[str], arg_sig: list[str], prologue: list[str],
                unpack: list[str], fn: Function) -> str:
        """``name_sum``: the body of ``name`` in a loop over the examples, accumulating."""
        value, flat = picked
        line_of = {s[0]: s[2] for s in stmts}
        accs = [alg.fresh("sum")] + [alg.fresh("gsum") for _ in flat]
        for acc, elem in zip(accs, [value, *flat]):
            if isinstance(elem, float):
                if elem != 0.0:  # a constant: the same for every example
                    stmts.append([acc, f"{acc} + {fmt_const(elem)}", None])
            else:
                stmts.append([acc, f"{acc} + {elem}", line_of.get(elem)])
        live = " ".join(accs)
        body = _fuse(_dce(stmts, live), live)
        self.statements += len(body)
        loop = arg_sig[0] if len(arg_sig) == 1 else ", ".join(arg_sig)
        target = f"({loop},)" if len(arg_sig) == 1 else loop
        lines = [f"def {name}_sum({', '.join(sig)}):",
                 f'    """(sum of {fn.name}, gradient of that sum with respect to the parameters) '
                 f'over a batch: each argument holds one value per example."""',
                 *prologue, f"    {' = '.join(accs)} = 0.0",
                 f"    for {target} in zip({', '.join(arg_sig)}):",
                 *(f"        {u}" for u in unpack), *_body_lines(body, "        "),
                 f"    return {accs[0]}, [{', '.join(accs[1:])}]"]
        return "\n".join(lines)

    def _rename(self, alg: PyAlgebra, start: int, elems: list[Elem], base: str,
                named: dict[str, int], size: int) -> list[Elem]:
        """Give the statements that produced a user-named node's elements that user's name."""
        created = {s[0]: s for s in alg.stmts[start:]}
        version = named.get(base, 0) + 1
        named[base] = version
        stem = f"_{base}" + (str(version) if version > 1 else "")
        out = []
        for i, e in enumerate(elems):
            stmt = created.pop(e, None) if isinstance(e, str) else None
            if stmt is None:
                out.append(e)
                continue
            new = stem + (f"_{i}" if size > 1 else "")
            while new in alg.taken:
                new += "_"
            alg.taken.add(new)
            stmt[0] = new
            out.append(new)
        return out


_NAME_USE = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")


def _body_lines(body: list[list[Any]], indent: str) -> list[str]:
    """Statements as lines, with a ``# line N`` comment where the source line changes."""
    lines = []
    last_line: int | None = -1
    for target, expr, line in body:
        if line != last_line and line is not None:
            lines.append(f"{indent}# line {line}")
        last_line = line
        lines.append(f"{indent}{target} = {expr}")
    return lines


#: the most operations one fused statement may hold (keeps nesting shallow for CPython)
FUSE_LIMIT = 12
_TEMP = re.compile(r"\b_t\d+\b")
_ATOM = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(\([^()]*\))?$")


def _fuse(stmts: list[list[Any]], returned: str) -> list[list[Any]]:
    """Inline each unnamed temporary used exactly once into its user on the same source line,
    up to FUSE_LIMIT operations per statement: fewer loads and stores, same arithmetic in the
    same order (parentheses keep the evaluation order of the unfused code)."""
    uses: dict[str, int] = {}
    for stmt in stmts:
        for name in _TEMP.findall(stmt[1]):
            uses[name] = uses.get(name, 0) + 1
    for name in _TEMP.findall(returned):
        uses[name] = uses.get(name, 0) + 2  # never inline into the return
    where = {stmt[0]: i for i, stmt in enumerate(stmts)}
    ops = [1] * len(stmts)
    gone = [False] * len(stmts)
    for i, stmt in enumerate(stmts):
        for name in dict.fromkeys(_TEMP.findall(stmt[1])):
            j = where.get(name)
            if j is None or j >= i or gone[j] or uses.get(name) != 1:
                continue
            if stmts[j][2] != stmt[2] or ops[i] + ops[j] > FUSE_LIMIT:
                continue
            inner = stmts[j][1]
            text = inner if _ATOM.match(inner) else f"({inner})"
            stmt[1] = _replace_first(stmt[1], name, text)
            ops[i] += ops[j]
            gone[j] = True
    return [stmt for stmt, dead in zip(stmts, gone) if not dead]


def _replace_first(expr: str, name: str, text: str) -> str:
    """``expr`` with its first use of the temporary ``name`` replaced by ``text``."""
    for match in _TEMP.finditer(expr):
        if match.group(0) == name:
            return expr[:match.start()] + text + expr[match.end():]
    return expr


def _dce(stmts: list[list[Any]], returned: str) -> list[list[Any]]:
    """Drop statements whose target is never used (element-level dead-code elimination)."""
    live = set(_NAME_USE.findall(returned))
    kept = []
    for stmt in reversed(stmts):
        if stmt[0] in live:
            kept.append(stmt)
            live.update(_NAME_USE.findall(stmt[1]))
    kept.reverse()
    return kept


Render = Callable[[list[list[Elem]]], str]


def generate(program: Program, *, hessians: bool = False,
             budget: int = MAX_SCALAR_STATEMENTS, verify: bool = True) -> str:
    """The scalar-backend module for a program (see the module docstring).

    With ``verify`` (the default) the text is checked against the allowlist of
    :mod:`exprgrad.verify` before it is returned.
    """
    with no_gc():
        return _generate(program, hessians, budget, verify)


def _generate(program: Program, hessians: bool, budget: int, verify: bool) -> str:
    writer = ModuleWriter(program, budget)
    graph = program.graph
    for fname, fn in program.functions.items():
        args_doc = ", ".join(a + (f"[{','.join(map(str, s))}]" if s else "")
                             for a, s in zip(fn.arg_names, fn.arg_shapes))
        outs = fn.outputs
        n_out = len(outs)
        shapes = [o.shape for o in outs]

        def values(v: list[list[Elem]], shapes: list[tuple[int, ...]] = shapes) -> str:
            shown = [_shape_elems(v[i], s) for i, s in enumerate(shapes)]
            return shown[0] if len(shown) == 1 else "(" + ", ".join(shown) + ")"

        writer.emit(fname, fn, outs, values, f"{fname}({args_doc}) from line {fn.span.line}.",
                    fn.uses_params)
        if fn.uses_params:
            tensors = list(program.params.values())
            wrt = [t.node for t in tensors]
        else:
            wrt = fn.inputs
        roots = list(outs)
        for out in outs:
            roots.extend(grad(graph, out, wrt))
        summed = None
        if fn.uses_params and n_out == 1 and shapes[0] == () and fn.inputs:
            summed = _grad_picker(program, len(wrt))
        writer.emit(fname + "_grad", fn, roots, _grad_render(program, fn, n_out, len(wrt), values),
                    f"(value, gradient with respect to "
                    f"{'the parameters' if fn.uses_params else 'each argument'}) of {fname}.",
                    fn.uses_params, summed)
        if hessians and not fn.uses_params and n_out == 1 and outs[0].shape == () and all(
                s == () for s in fn.arg_shapes):
            n = len(fn.inputs)
            first = grad(graph, outs[0], fn.inputs)
            second = hessian(graph, outs[0], fn.inputs)
            roots = [outs[0], *first, *[x for row in second for x in row]]

            def hess(v: list[list[Elem]], n: int = n) -> str:
                g = _tuple([_shape_elems(v[1 + i], ()) for i in range(n)])
                rows = [_tuple([_shape_elems(v[1 + n + i * n + j], ()) for j in range(n)])
                        for i in range(n)]
                return f"{_shape_elems(v[0], ())}, {g}, {_tuple(rows)}"

            writer.emit(fname + "_hess", fn, roots, hess, f"(value, gradient, Hessian) of {fname}.",
                        False)
    code = _assemble(program, writer)
    if verify:
        from .verify import verify_module

        verify_module(code)
    return code


def _tuple(items: list[str]) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _grad_picker(program: Program, n_wrt: int
                 ) -> Callable[[list[list[Elem]]], tuple[Elem, list[Elem]]]:
    """For a scalar loss of parameters: (value element, flat gradient elements)."""
    position = {t: i for i, t in enumerate(program.params)}

    def pick(v: list[list[Elem]]) -> tuple[Elem, list[Elem]]:
        row = v[1:1 + n_wrt]
        return v[0][0], [row[position[t]][i] for t, i in program.param_order]

    return pick


def _grad_render(program: Program, fn: Function, n_out: int, n_wrt: int, values: Render) -> Render:
    """How f_grad returns: (value, grads); see docs/generated.md."""
    position = {t: i for i, t in enumerate(program.params)}

    def render(v: list[list[Elem]]) -> str:
        parts = []
        for k in range(n_out):
            row = v[n_out + k * n_wrt: n_out + (k + 1) * n_wrt]
            if fn.uses_params:
                flat = [row[position[t]][i] for t, i in program.param_order]
                parts.append(_shape_elems(flat, (len(flat),)))
            else:
                parts.append(_tuple([_shape_elems(r, s) for r, s in zip(row, fn.arg_shapes)]))
        grads = parts[0] if n_out == 1 else _tuple(parts)
        return f"{values(v[:n_out])}, {grads}"

    return render


def _assemble(program: Program, writer: ModuleWriter) -> str:
    label = safe_label(program.filename)
    digest = hashlib.sha256(program.source.encode("utf-8")).hexdigest()
    out = [
        f"# Generated by exprgrad {__version__} from {label}; do not edit.",
        f"# exprgrad-source-sha256: {digest}",
        f'"""Straight-line forward and gradient code compiled from {label} by exprgrad.',
        "",
        "Each def f has f(...) (its value) and f_grad(...) ((value, gradient)); see",
        'exprgrad\'s docs/generated.md for the exact calling convention."""',
        "",
    ]
    imports = []
    if writer.uses_math or writer.helpers:
        imports.append("import math")
    if program.params:
        imports.append("import random")
    out.extend(imports)
    out.append("")
    out.append(f"EXPRGRAD_VERSION = {__version__!r}")
    out.append(f"SOURCE = {label!r}")
    out.append(f"SOURCE_SHA256 = {digest!r}")
    funcs = ", ".join(f"{n!r}: {tuple(f.arg_names)!r}" for n, f in program.functions.items())
    out.append(f"FUNCTIONS = {{{funcs}}}")
    names = program.param_names
    out.append("PARAM_NAMES = (" + "".join(f"\n    {n!r}," for n in names) + ("\n" if names else "")
               + ")")
    out.append("")
    if writer.helpers:
        out.append("")
        for name in sorted(writer.helpers):
            out.append(HELPERS[name])
    out.append("")
    out.append(_init_params(program))
    for chunk in writer.chunks:
        out.append("")
        out.append("")
        out.append(chunk)
    return "\n".join(out).rstrip("\n") + "\n"


def _init_params(program: Program) -> str:
    lines = ["def init_params(seed=0):",
             '    """Initial parameter values, in PARAM_NAMES order; the same seed gives the same '
             'values."""']
    if not program.params:
        lines.append("    return []")
        return "\n".join(lines)
    lines.append("    rng = random.Random(seed)")
    lines.append("    return [")
    for tensor, index in program.param_order:
        kind, a, b = program.params[tensor].init[index]
        if kind == "uniform":
            lines.append(f"        rng.uniform({fmt_const(a)}, {fmt_const(b)}),")
        elif kind == "normal":
            lines.append(f"        rng.gauss({fmt_const(a)}, {fmt_const(b)}),")
        else:
            lines.append(f"        {fmt_const(a)},")
    lines.append("    ]")
    return "\n".join(lines)
