"""IR to straight-line numpy source (the batched backend).

Contract: :func:`generate_numpy` returns the text of a module that needs only ``numpy``. Every
function takes its arguments with the batch as the leading axis (``x`` of shape ``(B, 3)`` for
``x[3]``, ``y`` of shape ``(B,)`` for a scalar ``y``) and computes all examples at once: one
array operation per IR node, so a layer is one matrix product, not one statement per weight.

- ``f(...)`` returns the per-example values (shape ``(B,)`` for a scalar output).
- ``f_grad(...)`` returns ``(values, grads)``. For a function of parameters (``f(params, ...)``),
  ``grads`` is the flat gradient aligned with ``PARAM_NAMES``, *summed over the batch*; each
  weight matrix's gradient is one matrix product over the batch. Otherwise ``grads`` holds one
  per-example gradient array per argument.

Parameters are read from the flat vector through views (slices and reshapes), never copied.
Numbers follow the numeric policy of :mod:`exprgrad.ops` through numpy's IEEE arithmetic (numpy
may print RuntimeWarnings for domain errors). The output passes :mod:`exprgrad.verify`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import __version__
from .codegen import fmt_const, ident_part, safe_label
from .diff import grad
from .ir import Node, no_gc, reachable
from .lower import Function, Program
from .ops import OPS, NpCtx


def _layout(positions: list[int], shape: tuple[int, ...], total: int) -> str | None:
    """A slice/reshape view of ``params`` holding these flat positions, if there is one."""
    if not positions:
        return None
    a = positions[0]
    if shape == ():
        return f"{a}"
    if len(shape) == 1:
        n = shape[0]
        r = positions[1] - a if n > 1 else 1
        if r > 0 and all(p == a + i * r for i, p in enumerate(positions)):
            return f"{a}:{a + (n - 1) * r + 1}" + (f":{r}" if r != 1 else "")
        return None
    m, n = shape
    r = positions[n] - a if m > 1 else n
    if r >= n and a + m * r <= total and all(
            positions[i * n + j] == a + i * r + j for i in range(m) for j in range(n)):
        return f"reshape:{a}:{a + m * r}:{m}:{r}:{n}"
    return None


def _view(base: str, spec: str) -> str:
    if spec.startswith("reshape:"):
        _, a, b, m, r, n = spec.split(":")
        cols = f"[:, 0:{n}]"
        return f"np.reshape({base}[{a}:{b}], ({m}, {r})){cols}"
    return f"{base}[{spec}]"


class _Writer:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.graph = program.graph
        self.lines: list[str] = []
        self.counter = 0

    def fresh(self, hint: str | None) -> str:
        self.counter += 1
        return f"_{ident_part(hint)}{self.counter}" if hint else f"_t{self.counter}"

    def function(self, name: str, fn: Function, roots: list[Node], doc: str,
                 param_grads: list[Node] | None) -> None:
        program, graph = self.program, self.graph
        sig = list(fn.arg_names)
        body: list[str] = []
        env: dict[int, tuple[str, bool]] = {}
        batch = None
        for node, arg in zip(fn.inputs, fn.arg_names):
            local = f"_{ident_part(arg)}"
            body.append(f"    {local} = np.asarray({arg}, np.float64)")
            env[node.id] = (local, True)
            batch = batch or f"len({local})"
        if batch:
            body.append(f"    _B = {batch}")
        layouts: dict[str, str] = {}
        if fn.uses_params:
            sig = ["params", *sig]
            body.append("    _p = np.asarray(params, np.float64)")
            total = len(program.param_order)
            where: dict[str, list[int]] = {t: [0] * program.params[t].node.size
                                           for t in program.params}
            for pos, (t, i) in enumerate(program.param_order):
                where[t][i] = pos
            for t, pt in program.params.items():
                spec = _layout(where[t], pt.node.shape, total)
                if spec is None:
                    spec = "[" + ", ".join(map(str, where[t])) + "]"
                    local = self.fresh(t)
                    dims = ", ".join(map(str, pt.node.shape))
                    body.append(f"    {local} = np.reshape(_p[np.asarray({spec})], ({dims},))")
                else:
                    local = self.fresh(t)
                    body.append(f"    {local} = {_view('_p', spec)}")
                layouts[t] = spec
                env[pt.node.id] = (local, False)
        last_line = None
        # a batched outer product that is a parameter gradient is never formed: its batch sum
        # is one matrix product of its two factors (see _batch_sum)
        batched_ids = _depends_on(roots, {n.id for n in fn.inputs})
        emitted = [r for r in roots]
        for g in param_grads or []:
            if g.op == "outer" and all(a.id in batched_ids for a in g.args):
                emitted = [x for x in emitted if x is not g] + list(g.args)
        for node in reachable(emitted):
            if node.id in env:
                continue
            if node.op == "const":
                number = float(node.attr)
                if node.shape == ():
                    env[node.id] = (fmt_const(number), False)
                else:
                    local = self.fresh(None)
                    dims = ", ".join(map(str, node.shape))
                    body.append(f"    {local} = np.full(({dims},), {fmt_const(number)})")
                    env[node.id] = (local, False)
                continue
            if node.op == "custom":
                env[node.id] = env[node.args[node.attr[0]].id]
                continue
            span = graph.spans.get(node.id)
            if span and span.line != last_line:
                body.append(f"    # line {span.line}")
                last_line = span.line
            args = [env[a.id] for a in node.args]
            batched = [b for _, b in args]
            texts = [t for t, _ in args]
            op = OPS[node.op]
            assert op.np is not None, f"{node.op} has no numpy emitter"
            if op.elementwise and any(batched):
                rank = len(node.shape)
                texts = [t + ("[" + ", ".join([":"] + ["None"] * (rank - len(a.shape))) + "]"
                              if b and len(a.shape) < rank else "")
                         for t, b, a in zip(texts, batched, node.args)]
            consts = [float(a.attr) if a.op == "const" and a.shape == () else None
                      for a in node.args]
            ctx = NpCtx(batched, [a.shape for a in node.args], node.shape, "_B", consts)
            expr = op.np(texts, node.attr, ctx)
            local = self.fresh(graph.names.get(node.id))
            body.append(f"    {local} = {expr}")
            env[node.id] = (local, any(batched))
        outs = [env[r.id][0] for r in fn.outputs]
        value = outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ")"
        if param_grads is None and name.endswith("_grad"):
            grads = [env[r.id][0] for r in roots[len(fn.outputs):]]
            ret = f"{value}, ({', '.join(grads)}{',' if len(grads) == 1 else ''})"
        elif param_grads is not None:
            total = len(program.param_order)
            body.append(f"    _g = np.empty({total})")
            for t, g in zip(program.params, param_grads):
                if g.id in env and not env[g.id][1]:
                    text = env[g.id][0]
                else:
                    text = self._batch_sum(g, env)
                spec = layouts[t]
                if spec.startswith("["):
                    body.append(f"    _g[np.asarray({spec})] = np.reshape({text}, (-1,))")
                else:
                    body.append(f"    {_view('_g', spec)} = {text}")
            ret = f"{value}, _g"
        else:
            ret = value
        self.lines.append(f"def {name}({', '.join(sig)}):")
        self.lines.append(f'    """{doc}"""')
        self.lines.extend(body)
        self.lines.append(f"    return {ret}")
        self.lines.append("")
        self.lines.append("")

    def _batch_sum(self, g: Node, env: dict[int, tuple[str, bool]]) -> str:
        """A batched parameter gradient summed over the batch (a matrix product for outer)."""
        if g.op == "outer" and all(a.id in env and env[a.id][1] for a in g.args):
            a, b = (env[x.id][0] for x in g.args)
            return f"{a}.T @ {b}"
        return f"{env[g.id][0]}.sum(0)"


def _depends_on(roots: Sequence[Node], inputs: set[int]) -> set[int]:
    """Ids of the nodes that depend on an input (in numpy code: the batched values)."""
    out: set[int] = set()
    for node in reachable(roots):
        if node.id in inputs or any(a.id in out for a in node.args):
            out.add(node.id)
    return out


def generate_numpy(program: Program, *, verify: bool = True) -> str:
    """The numpy-backend module for a program (see the module docstring)."""
    with no_gc():
        writer = _Writer(program)
        graph = program.graph
        for fname, fn in program.functions.items():
            writer.function(fname, fn, list(fn.outputs), f"{fname}, batched.", None)
            if fn.uses_params:
                wrt = [t.node for t in program.params.values()]
                if len(fn.outputs) != 1 or fn.outputs[0].shape != ():
                    continue  # parameter gradients are for scalar losses
                grads = grad(graph, fn.outputs[0], wrt)
                writer.function(fname + "_grad", fn, [*fn.outputs, *grads],
                                f"(values, gradient summed over the batch) of {fname}.", grads)
            else:
                roots = list(fn.outputs)
                if len(fn.outputs) == 1:
                    roots.extend(grad(graph, fn.outputs[0], fn.inputs))
                    writer.function(fname + "_grad", fn, roots,
                                    f"(values, per-example gradients) of {fname}.", None)
        label = safe_label(program.filename)
        digest = hashlib.sha256(program.source.encode("utf-8")).hexdigest()
        names = program.param_names
        header = [
            f"# Generated by exprgrad {__version__} from {label}; do not edit.",
            f"# exprgrad-source-sha256: {digest}",
            f'"""Batched numpy forward and gradient code compiled from {label} by exprgrad."""',
            "",
            "import numpy as np",
            "",
            f"EXPRGRAD_VERSION = {__version__!r}",
            "BACKEND = 'numpy'",
            f"SOURCE = {label!r}",
            f"SOURCE_SHA256 = {digest!r}",
            "PARAM_NAMES = (" + "".join(f"\n    {n!r}," for n in names)
            + ("\n" if names else "") + ")",
            "",
            "",
        ]
        code = "\n".join(header + writer.lines).rstrip("\n") + "\n"
        if verify:
            from .verify import verify_module

            verify_module(code)
        return code


def numpy_batch_step(program: Program, fn: Function, examples: list[list[Any]]):  # type: ignore[no-untyped-def]
    """A ``(params, indices) -> (summed loss, flat gradient list)`` function for training."""
    import numpy as np

    from .api import module_from_code

    only = replace(program, functions={fn.name: fn})
    module = module_from_code(generate_numpy(only), "exg_numpy",
                              f"<exprgrad-numpy:{Path(program.filename).name}>")
    loss_grad = getattr(module, fn.name + "_grad")
    columns = [np.asarray([ex[i] for ex in examples], dtype=np.float64)
               for i in range(len(fn.arg_names))]
    everything = list(range(len(examples)))

    def step(params: Sequence[float], idx: list[int]) -> tuple[float, list[float]]:
        cols = columns if idx == everything else [c[idx] for c in columns]
        values, g = loss_grad(params, *cols)
        return float(np.sum(values)), g

    return step
