"""Graphviz drawings of a function's forward program (and, on request, its gradient program).

Contract:
- :func:`dot_source` is a pure function from a program to DOT text, in the seed notebook's style
  (left to right; each value a record ``{ name | data 2.0000 | grad 1.0000 }``, each operation an
  oval between values). The text is stable: ids come from IR node ids, attributes are sorted, so
  the same input gives byte-identical DOT. It needs no Graphviz.
- With ``at`` values, each record shows its value and its gradient (d output / d node, what
  micrograd's ``backward()`` leaves in ``.grad``), computed from the IR with the op table's
  reference implementations.
- Network layers are drawn as clusters; ``collapse=True`` draws one box per layer. A graph over
  :data:`MAX_DRAW_NODES` nodes is refused with a message naming the count and the way out.
- :func:`render` turns DOT into SVG, PNG or PDF with Graphviz's ``dot`` (or writes the DOT text);
  :func:`draw` returns a ``graphviz.Digraph`` for notebooks.
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..emit.module import initial_params
from ..errors import ExprgradLimitError, ExprgradValueError
from ..ir.derive import derivatives
from ..ir.diff import diff_args, grad
from ..ir.interpret import interpret
from ..ir.node import Node, reachable
from ..ir.ops import OPS, EvalAlgebra
from ..ir.program import Function, Program
from ..lower.lowering import did_you_mean, flatten_values, program_of
from ..run.evaluate import check_value, parse_assignments
from ..run.files import check_output, write_output
from ..run.paramsio import load_params

#: the formats drawings are written in
DRAW_SUFFIXES = (".svg", ".png", ".pdf", ".dot", ".gv")
#: the most IR nodes drawn in one picture
MAX_DRAW_NODES = 400


def _fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    shown = ", ".join(f"{v:.3f}" for v in values[:4])
    return f"[{shown}{', ...' if len(values) > 4 else ''}]"


def _escape(text: str) -> str:
    out = []
    for ch in text:
        if ch in '{}|<>"\\ ':
            out.append("\\" + ch if ch != " " else " ")
        else:
            out.append(ch)
    return "".join(out)


def evaluate_nodes(program: Program, nodes: Sequence[Node], leaves: dict[int, list[float]]
                   ) -> dict[int, list[float]]:
    """Element values of ``nodes`` (reference implementations; ``leaves`` binds inputs)."""
    env = dict(leaves)
    interpret(nodes, env, EvalAlgebra())
    return env


def _leaf_values(program: Program, fn: Function, at: dict[str, Any] | None,
                 params: Sequence[float] | None) -> dict[int, list[float]]:
    """The values of the inputs (from ``at``, if given) and of the parameters (``params`` in
    ``program.param_order``, default: ``init_params(0)``)."""
    leaves: dict[int, list[float]] = {}
    if at is not None:
        for node, name in zip(fn.inputs, fn.arg_names):
            leaves[node.id] = flatten_values(at[name])
    if program.params:
        if params is None:
            params = initial_params(program, 0)
        flat = [float(v) for v in params]
        if len(flat) != len(program.param_order):
            raise ExprgradValueError(f"{len(flat)} parameter values for a program with "
                                     f"{len(program.param_order)}")
        for pt in program.params.values():
            leaves[pt.node.id] = [0.0] * pt.node.size
        for value, (name, index) in zip(flat, program.param_order):
            leaves[program.params[name].node.id][index] = value
    return leaves


def dot_source(program: Program, fname: str, *, at: dict[str, Any] | None = None,
               backward: bool = False, collapse: bool = False,
               params: Sequence[float] | None = None, limit: int = MAX_DRAW_NODES) -> str:
    """DOT text for one function (see the module docstring)."""
    return "digraph exprgrad {\n" + "\n".join(dot_body(
        program, fname, at=at, backward=backward, collapse=collapse, params=params,
        limit=limit)) + "\n}\n"


def dot_body(program: Program, fname: str, *, at: dict[str, Any] | None = None,
             backward: bool = False, collapse: bool = False,
             params: Sequence[float] | None = None, limit: int = MAX_DRAW_NODES) -> list[str]:
    fn = program.functions[fname]
    graph = program.graph
    outputs = list(fn.outputs)
    forward_nodes = reachable(outputs)
    forward_ids = {n.id for n in forward_nodes}
    grad_roots: list[Node] = []
    grads_of: dict[int, Node] = {}
    if (backward or at is not None) and len(outputs) == 1 and outputs[0].shape == ():
        # the body of a call with grad rules is not differentiated (its rules are): its nodes
        # have no gradient to show, rather than a gradient of 0
        on_path = {n.id for n in reachable(outputs, diff_args)}
        everything = [n for n in forward_nodes if n.op != "const" and n.id in on_path]
        cotangents = grad(graph, outputs[0], everything)
        grads_of = {n.id: g for n, g in zip(everything, cotangents)}
        derived = derivatives(program, fn)  # the gradient program the backends write
        grad_roots = [g for w, g in zip(derived.wrt, derived.grads[0]) if w.id in grads_of]
        assert all(grads_of[w.id] is g for w, g in zip(derived.wrt, derived.grads[0])
                   if w.id in grads_of), "the drawn gradient differs from the generated one"
    drawn = forward_nodes + ([n for n in reachable(grad_roots) if n.id not in forward_ids]
                             if backward else [])
    group_of = {n.id: graph.groups.get(n.id) for n in drawn}
    if collapse:
        count = len({g for g in group_of.values() if g}) + sum(1 for g in group_of.values()
                                                             if not g)
    else:
        count = len(drawn)
    if count > limit:
        raise ExprgradLimitError(
            f"the graph of '{fname}' has {count} nodes; pictures are limited to {limit} "
            "(exprgrad.ui.drawing.MAX_DRAW_NODES)",
            hint="draw one layer per box with --collapse, leave out --backward, or draw a "
            "smaller function")
    values: dict[int, list[float]] = {}
    if at is not None:
        leaves = _leaf_values(program, fn, at, params)
        values = evaluate_nodes(program, drawn + list(grads_of.values()), leaves)
    elif params is not None:  # no inputs to compute with: the parameters show their values
        values = _leaf_values(program, fn, None, params)

    def label_of(node: Node) -> str:
        if node.op == "input":
            return str(node.attr[1])
        if node.op == "param":
            return str(node.attr)
        if node.op == "const":
            return f"{float(node.attr):g}"
        return graph.names.get(node.id, "")

    return dot_lines(drawn, forward_ids, values, grads_of, label_of, group_of, collapse,
                     named_consts=set(graph.names))


#: ops whose operands may be swapped: their edges carry no operand number
COMMUTATIVE = frozenset({"add", "mul", "max", "min", "hypot", "dot"})


def dot_lines(drawn: Sequence[Node], forward_ids: set[int], values: dict[int, list[float]],
              grads_of: dict[int, Node], label_of: Callable[[Node], str],
              group_of: dict[int, str | None], collapse: bool = False,
              named_consts: set[int] | frozenset[int] = frozenset()) -> list[str]:
    """The DOT statements of a drawing: a record per value (its label, ``data`` from
    ``values``, ``grad`` from the value of its cotangent in ``grads_of``, its shape; an unnamed
    value without data shows its operation, so no record is empty), an op node between it and
    its arguments. A constant not in ``named_consts`` is drawn once per use, as a record of its
    own (``c<user>_<position>``, labelled with the number), as micrograd's ``draw_dot`` draws it.
    The edges into an op whose operands are not interchangeable (``-``, ``/``, ``**``, ``@``...)
    are labelled with the operand's position (1, 2, ...), so ``1 - x`` and ``x - 1`` differ.
    Nodes not in ``forward_ids`` (the gradient program) are shaded. With ``collapse``, each
    group (network layer) is one box and every edge that enters or leaves a group is kept,
    drawn between boxes."""
    lines = ['  graph [rankdir="LR", fontname="Helvetica", fontsize="11"];',
             '  node [fontname="Helvetica", fontsize="11"];',
             '  edge [fontname="Helvetica", fontsize="10"];']

    clusters: dict[str, list[str]] = {}
    plain: list[str] = []
    edges: list[tuple[str, str, str]] = []  # (source, target, attributes)
    box_group: dict[str, str | None] = {}  # a DOT node id -> the group it is drawn in

    def hidden(node: Node) -> bool:
        """Unnamed constants are drawn once per use (see :func:`const_record`)."""
        return node.op == "const" and node.id not in named_consts

    def record(ident: str, fields: list[str], shaded: bool) -> str:
        style = ', style="filled", fillcolor="#eef3ff"' if shaded else ""
        return f'  {ident} [label="{{ {" | ".join(fields)} }}", shape="record"{style}];'

    def shape_text(node: Node) -> str:
        return "x".join(str(d) for d in node.shape)

    for node in drawn:
        if hidden(node):
            continue
        group = group_of.get(node.id)
        target = clusters.setdefault(group, []) if group else plain
        shaded = node.id not in forward_ids
        name = _escape(label_of(node))
        fields = [name] if name else []
        if node.id in values:
            fields.append(f"data {_escape(_fmt(values[node.id]))}")
            g = grads_of.get(node.id)
            if g is not None and g.id in values:
                fields.append(f"grad {_escape(_fmt(values[g.id]))}")
        if not fields:  # an unnamed value without data: say what it is
            fields.append(_escape(node.op if node.op in OPS else "?"))
        if node.shape:
            fields.append(shape_text(node))
        box_group[f"n{node.id}"] = group
        target.append(record(f"n{node.id}", fields, shaded))
        if node.args and node.op != "custom":
            op_label = OPS[node.op].label + (f" {node.attr}" if node.op == "index" else "")
            op_id = f"n{node.id}_op"
            box_group[op_id] = group
            target.append(f'  {op_id} [label="{_escape_quoted(op_label)}"];')
            edges.append((op_id, f"n{node.id}", ""))
            numbered = len(node.args) > 1 and node.op not in COMMUTATIVE
            for position, arg in enumerate(node.args):
                attrs = f' [label="{position + 1}"]' if numbered else ""
                if hidden(arg):
                    const_id = f"c{node.id}_{position}"
                    box_group[const_id] = group
                    const_fields = [_escape(label_of(arg) or f"{float(arg.attr):g}")]
                    if arg.shape:
                        const_fields.append(shape_text(arg))
                    target.append(record(const_id, const_fields, shaded))
                    edges.append((const_id, op_id, attrs))
                else:
                    edges.append((f"n{arg.id}", op_id, attrs))
        elif node.op == "custom":
            body = node.args[node.attr[0]]
            if not hidden(body):
                edges.append((f"n{body.id}", f"n{node.id}", ""))
    if collapse:  # one box per group; the edges between boxes (and plain nodes) stay
        for group in sorted(g for g in clusters if g):
            lines.append(f'  {_group_id(group)} [label="{_escape_quoted(group)}", '
                         'shape="box3d"];')
        kept: list[tuple[str, str, str]] = []
        seen: set[tuple[str, str]] = set()
        for src, dst, attrs in edges:
            src_group, dst_group = box_group.get(src), box_group.get(dst)
            if src_group and src_group == dst_group:
                continue  # inside one box
            if src_group:
                src = _group_id(src_group)
            if dst_group:
                dst = _group_id(dst_group)
                attrs = ""  # an operand number means nothing on a box
            if (src, dst) not in seen:
                seen.add((src, dst))
                kept.append((src, dst, attrs))
        edges = kept
    lines.extend(plain)
    for group in sorted(g for g in clusters if g):
        if collapse:
            continue
        lines.append(f"  subgraph cluster_{_ident(group)} {{")
        lines.append(f'    label="{_escape_quoted(group)}"; style="rounded"; color="#888888";')
        lines.extend("  " + line for line in clusters[group])
        lines.append("  }")
    # one edge per operand: x * x has two edges from x
    lines.extend(f"  {src} -> {dst}{attrs};" for src, dst, attrs in edges)
    return lines


def _ident(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text)


def _group_id(group: str) -> str:
    return "layer_" + _ident(group)


def _escape_quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


# ---------------------------------------------------------------------------------------------


def _mark_png(data: bytes) -> bytes:
    """Insert a tEXt chunk naming exprgrad after IHDR (so a later run may replace the file)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    ihdr_end = 8 + 12 + struct.unpack(">I", data[8:12])[0]
    body = b"tEXt" + b"Software\x00exprgrad graph"
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    return data[:ihdr_end] + chunk + data[ihdr_end:]


def _mark_svg(data: bytes) -> bytes:
    text = data.decode("utf-8")
    first, _, rest = text.partition("\n")
    if first.startswith("<?xml"):
        return (first + "\n<!-- exprgrad graph -->\n" + rest).encode("utf-8")
    return ("<!-- exprgrad graph -->\n" + text).encode("utf-8")


def render(dot_text: str, output: str | Path, *, force: bool = False) -> None:
    """Write DOT text, or render it with Graphviz's ``dot`` to SVG, PNG or PDF (atomically)."""

    path = Path(output)
    fmt = path.suffix.lower().lstrip(".")
    if fmt == "dot" or fmt == "gv":
        write_output(path, "// exprgrad graph\n" + dot_text, force=force)
        return
    check_output(path, force=force, suffixes=DRAW_SUFFIXES)
    exe = shutil.which("dot")
    if exe is None:
        raise ExprgradValueError(
            f"drawing {fmt.upper()} needs Graphviz's 'dot' program, which is not installed",
            hint="install it with 'apt-get install graphviz' (scripts/setup.sh does), or write "
            "a .dot file instead")
    try:
        result = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode("utf-8"),
                                capture_output=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        raise ExprgradLimitError("Graphviz took more than 300 seconds",
                                 hint="draw with --collapse") from None
    if result.returncode != 0:
        raise ExprgradValueError("Graphviz failed: " + result.stderr.decode("utf-8", "replace")
                                 .strip()[:500])
    data = result.stdout
    if fmt == "png":
        data = _mark_png(data)
    elif fmt == "svg":
        data = _mark_svg(data)
    else:
        data = data.rstrip(b"\n") + b"\n%exprgrad graph\n"
    write_output(path, data, force=force)


def _choose(program: Program, function: str | None, where: str) -> tuple[str, str | None]:
    """The function to draw and, when none was named and there are several, a note saying
    which one is drawn (the first) and what the others are."""
    if not program.functions:
        raise ExprgradValueError(f"{where} defines no function to draw")
    names = list(program.functions)
    if function is None:
        note = None
        if len(names) > 1:
            note = (f"drew '{names[0]}', the first of {len(names)} functions in {where} "
                    f"({', '.join(names)}); name one to draw another")
        return names[0], note
    if function not in program.functions:
        raise ExprgradValueError(f"{where} has no function '{function}'",
                                 hint=did_you_mean(function, names)
                                 or f"functions: {', '.join(names)}")
    return function, None


def params_of(program: Program, params: Any) -> list[float] | None:
    """Parameter values for a drawing: None, a flat list (in ``program.param_order``, as
    ``train(...).params`` and ``init_params`` give them), the path of a file written by
    ``exprgrad train --save``, or that file's contents (a dict with ``params`` by name)."""
    if params is None:
        return None
    if isinstance(params, (str, Path)):
        return load_params(str(params), program)
    if isinstance(params, dict):
        by_name = params.get("params", params)
        missing = [n for n in program.param_names if n not in by_name]
        if missing or len(by_name) != len(program.param_names):
            raise ExprgradValueError("the parameters do not fit this program",
                                     hint=f"missing {', '.join(missing[:5])}" if missing
                                     else "it has other parameter names")
        return [float(by_name[n]) for n in program.param_names]
    return [float(v) for v in params]


def draw(source: str | Path | Program, function: str | None = None, *,
         at: dict[str, Any] | None = None, backward: bool = False, collapse: bool = False,
         params: Any = None) -> Any:
    """A ``graphviz.Digraph`` of a function (renders inline in Jupyter). ``params`` gives the
    network's parameter values (see :func:`params_of`); without it a network is drawn with its
    initial parameters (seed 0). Without ``function``, the first is drawn (a warning names it
    when there are several)."""
    import graphviz

    program = source if isinstance(source, Program) else program_of(source)
    name, note = _choose(program, function, str(getattr(program, "filename", "the program")))
    if note:
        warnings.warn(note, stacklevel=2)
    if at is not None:
        fn = program.functions[name]
        at = {k: check_value(k, at[k], s) for k, s in zip(fn.arg_names, fn.arg_shapes)}
    body = dot_body(program, name, at=at, backward=backward, collapse=collapse,
                    params=params_of(program, params))
    return graphviz.Digraph(name="exprgrad", body=[line + "\n" for line in body])


def graph_cli(args: argparse.Namespace) -> int:
    program = program_of(args.file)
    at_items = list(args.at or [])
    if args.function is None:  # '--at x=1 FUNC': the function name is not an assignment
        names = [item for item in at_items if "=" not in item]
        if len(names) == 1:
            args.function = names[0]
            at_items.remove(names[0])
    name, note = _choose(program, args.function, args.file)
    check_output(args.output, force=args.force, suffixes=DRAW_SUFFIXES)  # before any work
    at = parse_assignments(at_items, program.functions[name]) if at_items else None
    params = params_of(program, args.params) if args.params else None
    text = dot_source(program, name, at=at, backward=args.backward, collapse=args.collapse,
                      params=params)
    render(text, args.output, force=args.force)
    if note:
        print(f"exprgrad graph: {note}", file=sys.stderr)
    print(f"wrote {args.output}")
    return 0
