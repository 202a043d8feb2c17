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
from .ops import OPS, NpCtx, np_t

#: write results into dead temporaries (off only to measure what it saves: benchmarks/ablation.py)
REUSE_BUFFERS = True
#: compute logsumexp's gradient from its forward exponentials (likewise)
SHARE_SOFTMAX = True


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
    """The expression for a parameter tensor's view of the flat vector ``base``."""
    if spec.startswith("reshape:"):
        _, a, b, m, r, n = spec.split(":")
        view = f"{base}[{a}:{b}].reshape({m}, {r})"
        return view if r == n else f"{view}[:, :{n}]"
    return f"{base}[{spec}]"


class _Plan:
    """Liveness of one function's values, for writing results into dead temporaries.

    ``order`` is the emission order; position ``len(order)`` stands for the function's end (its
    return value and gradient assembly). Every value gets *roots*: the arrays its memory may
    belong to (its own id for a fresh result; its arguments' roots for a view; none for inputs,
    parameters and constants, which are never written). An array is free once every value
    rooted in it has had its last use.
    """

    def __init__(self, order: list[Node], final: Sequence[Node], known: set[int],
                 batched: set[int], fused: dict[int, Node]) -> None:
        end = len(order)
        self.index = {n.id: i for i, n in enumerate(order)}
        last: dict[int, int] = {}
        for i, node in enumerate(order):
            if node.id not in fused:
                for a in node.args:
                    last[a.id] = max(last.get(a.id, -1), i)
        for node in final:
            last[node.id] = end
        roots: dict[int, tuple[int, ...]] = {}
        for node in order:
            spec = OPS[node.op]
            if node.id in known or node.op == "const":
                roots[node.id] = ()
            elif spec.np_view:
                roots[node.id] = tuple(sorted({r for a in node.args for r in roots.get(a.id, ())}))
            else:
                roots[node.id] = (node.id,)
        death: dict[int, int] = {}
        for node in order:
            for r in roots[node.id]:
                death[r] = max(death.get(r, -1), last.get(node.id, self.index[node.id]))
        self.roots = roots
        self.death = death
        self.dies_at: dict[int, list[int]] = {}
        for r, i in death.items():
            if r in batched and r not in known:
                self.dies_at.setdefault(i, []).append(r)


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
        head: list[str] = []
        body: list[str] = []
        env: dict[int, tuple[str, bool]] = {}
        batch = None
        for node, arg in zip(fn.inputs, fn.arg_names):
            local = f"_{ident_part(arg)}"
            head.append(f"    {local} = np.asarray({arg}, np.float64)")
            env[node.id] = (local, True)
            batch = batch or f"len({local})"
        if batch:
            head.append(f"    _B = {batch}")
        ones: dict[str, str] = {}

        def ones_of(n: int | str) -> str:
            key = str(n)
            if key not in ones:
                ones[key] = "_onesB" if key == "_B" else f"_ones{key}"
                head.append(f"    {ones[key]} = np.ones({key})")
            return ones[key]

        layouts: dict[str, str] = {}
        if fn.uses_params:
            sig = ["params", *sig]
            head.append("    _p = np.asarray(params, np.float64)")
            total = len(program.param_order)
            where: dict[str, list[int]] = {t: [0] * program.params[t].node.size
                                           for t in program.params}
            for pos, (t, i) in enumerate(program.param_order):
                where[t][i] = pos
            for t, pt in program.params.items():
                spec = _layout(where[t], pt.node.shape, total)
                local = self.fresh(t)
                if spec is None:
                    spec = "[" + ", ".join(map(str, where[t])) + "]"
                    dims = ", ".join(map(str, pt.node.shape))
                    head.append(f"    {local} = np.reshape(_p[np.asarray({spec})], ({dims},))")
                else:
                    head.append(f"    {local} = {_view('_p', spec)}")
                layouts[t] = spec
                env[pt.node.id] = (local, False)
        known = set(env)
        # a batched outer product that is a parameter gradient is never formed: its batch sum
        # is one matrix product of its two factors (see the gradient assembly below)
        batched_ids = _depends_on(roots, {n.id for n in fn.inputs})
        emitted = list(roots)
        outer_grads: set[int] = set()
        for g in param_grads or []:
            if g.op == "outer" and all(a.id in batched_ids for a in g.args):
                emitted = [x for x in emitted if x is not g] + list(g.args)
                outer_grads.add(g.id)
        order = [n for n in reachable(emitted) if n.id not in known]
        fused = _softmax_of_lse(order) if SHARE_SOFTMAX else {}
        shared = {lse.id for lse in fused.values()}
        unneeded = _unneeded_subs(order, fused, emitted)
        order = [n for n in order if n.id not in unneeded]
        final = [*emitted, *(a for g in param_grads or [] if g.id in outer_grads
                             for a in g.args)]
        plan = _Plan(order, final, known, batched_ids, fused)
        by_id = {n.id: n for n in order}
        free: dict[tuple[int, ...], list[str]] = {}  # per-example shape -> dead arrays
        lse_parts: dict[int, tuple[str, str]] = {}  # logsumexp node -> (exp(v - max), sum)
        last_line = None
        for i, node in enumerate(order):
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
            if node.op == "transpose" and node.id not in batched_ids:  # a view, written inline
                env[node.id] = (np_t(env[node.args[0].id][0]), False)
                continue
            span = graph.spans.get(node.id)
            if span and span.line != last_line:
                body.append(f"    # line {span.line}")
                last_line = span.line
            is_batched = node.id in batched_ids
            local = self.fresh(graph.names.get(node.id))
            taken: str | None = None  # the dead array this result is written into
            if node.op == "logsumexp":
                self._logsumexp(node, local, env, free, body, lse_parts, ones_of,
                                shared=node.id in shared)
            elif node.id in fused:
                e, esum = lse_parts[fused[node.id].id]
                body.append(f"    {local} = np.divide({e}, {esum}[..., None], {e})"
                            if is_batched else f"    {local} = {e} / {esum}")
            else:
                taken = self._operation(node, local, i, env, free, plan, body, batched_ids,
                                        ones_of)
            env[node.id] = (local, is_batched)
            for r in plan.dies_at.get(i, ()):
                if env[r][0] != taken:
                    free.setdefault(by_id[r].shape, []).append(env[r][0])

        def per_example(node: Node) -> str:
            """A returned value, as an array with the batch axis even where it is constant."""
            text, is_batched = env[node.id]
            if is_batched or batch is None:
                return text
            return f"np.full(({', '.join(['_B', *map(str, node.shape)])},), {text})"

        outs = [per_example(r) for r in fn.outputs]
        value = outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ")"
        if param_grads is None and name.endswith("_grad"):
            grads = [per_example(r) for r in roots[len(fn.outputs):]]
            ret = f"{value}, ({', '.join(grads)}{',' if len(grads) == 1 else ''})"
        elif param_grads is not None:
            body.append(f"    _g = np.empty({len(program.param_order)})")
            for t, g in zip(program.params, param_grads):
                body.append(self._gradient(g, layouts[t], env, outer_grads, ones_of,
                                           batch is not None))
            ret = f"{value}, _g"
        else:
            ret = value
        self.lines.append(f"def {name}({', '.join(sig)}):")
        self.lines.append(f'    """{doc}"""')
        self.lines.extend(head)
        self.lines.extend(body)
        self.lines.append(f"    return {ret}")
        self.lines.append("")
        self.lines.append("")

    def _operation(self, node: Node, local: str, i: int, env: dict[int, tuple[str, bool]],
                   free: dict[tuple[int, ...], list[str]], plan: _Plan, body: list[str],
                   batched_ids: set[int], ones_of: Any) -> str | None:
        """Emit one array operation; returns the dead array it was written into, if any."""
        op = OPS[node.op]
        args = [env[a.id] for a in node.args]
        batched = [b for _, b in args]
        texts = [t for t, _ in args]
        if op.elementwise and any(batched):
            rank = len(node.shape)
            texts = [t + ("[" + ", ".join([":"] + ["None"] * (rank - len(a.shape))) + "]"
                          if b and len(a.shape) < rank else "")
                     for t, b, a in zip(texts, batched, node.args)]
        consts = [float(a.attr) if a.op == "const" and a.shape == () else None
                  for a in node.args]
        ctx = NpCtx(batched, [a.shape for a in node.args], node.shape, "_B", consts, ones_of)
        if op.np_into is not None and node.id in batched_ids and REUSE_BUFFERS:
            target = None
            if op.elementwise:  # an argument that dies here can take the result in place
                for a in node.args:
                    if (a.id in batched_ids and plan.roots.get(a.id) == (a.id,)
                            and plan.death.get(a.id) == i and a.shape == node.shape):
                        target = env[a.id][0]
                        break
            pool = free.get(node.shape)
            if target is None and pool:
                target = pool[-1]
            text = op.np_into(texts, node.attr, ctx, target) if target else None
            if text is not None:
                if pool and target == pool[-1]:
                    pool.pop()
                body.append(f"    {local} = {text}")
                return target
        assert op.np is not None, f"{node.op} has no numpy emitter"
        body.append(f"    {local} = {op.np(texts, node.attr, ctx)}")
        return None

    def _logsumexp(self, node: Node, local: str, env: dict[int, tuple[str, bool]],
                   free: dict[tuple[int, ...], list[str]], body: list[str],
                   parts: dict[int, tuple[str, str]], ones_of: Any, shared: bool) -> None:
        """log(sum(exp(v))) as m + log(sum(exp(v - m))), m = max(v), computing max once.

        The exponentials and their sum are kept for the gradient's softmax (``shared``), which
        then costs one division instead of a second pass of exponentials.
        """
        v, batched = env[node.args[0].id]
        n = node.args[0].shape[0]
        m, e, total = self.fresh("max"), self.fresh("exp"), self.fresh("sumexp")
        body.append(f"    {m} = {v}.max(-1)")
        pool = free.get(node.args[0].shape) if batched and REUSE_BUFFERS else None
        if pool:
            buf = pool.pop()
            body.append(f"    {e} = np.subtract({v}, {m}[..., None], {buf})")
            body.append(f"    {e} = np.exp({e}, {e})")
        elif batched:
            body.append(f"    {e} = {v} - {m}[..., None]")
            body.append(f"    {e} = np.exp({e}, {e})")
        else:
            body.append(f"    {e} = np.exp({v} - {m}[..., None])")
        body.append(f"    {total} = {e} @ {ones_of(n)}")
        if batched:
            body.append(f"    {local} = np.log({total})")
            body.append(f"    {local} = np.add({local}, {m}, {local})")
            if not shared:
                free.setdefault(node.args[0].shape, []).append(e)
        else:
            body.append(f"    {local} = np.log({total}) + {m}")
        parts[node.id] = (e, total)

    def _gradient(self, g: Node, spec: str, env: dict[int, tuple[str, bool]],
                  outer_grads: set[int], ones_of: Any, batch: bool) -> str:
        """The statement storing one parameter tensor's gradient, summed over the batch."""
        if g.id in env and not env[g.id][1]:  # the same for every example: B times it
            value, product = (f"_B * {env[g.id][0]}" if batch else env[g.id][0]), None
        elif g.id in outer_grads:  # sum over the batch of outer(a, b) = a.T @ b
            a, b = (env[x.id][0] for x in g.args)
            value, product = f"{a}.T @ {b}", (f"{a}.T", b)
        elif len(g.shape) <= 1:
            t = env[g.id][0]
            value, product = f"{ones_of('_B')} @ {t}", (ones_of("_B"), t)
        else:
            value, product = f"{env[g.id][0]}.sum(0)", None
        if spec.startswith("["):
            return f"    _g[np.asarray({spec})] = np.reshape({value}, (-1,))"
        if product is None or g.shape == ():
            target = _view("_g", spec)
            return f"    {target}{'[...]' if target.endswith(')') else ''} = {value}"
        return f"    {self.fresh('dw')} = np.matmul({product[0]}, {product[1]}, " \
            f"{_view('_g', spec)})"


def _softmax_of_lse(order: list[Node]) -> dict[int, Node]:
    """``exp(v - logsumexp(v))`` nodes (the softmax in logsumexp's gradient) -> their lse; one
    per lse, as its exponentials are divided in place."""
    found: dict[int, Node] = {}
    taken: set[int] = set()
    for node in order:
        if node.op == "exp" and node.args[0].op == "sub":
            v, lse = node.args[0].args
            if lse.op == "logsumexp" and lse.args[0] is v and node.shape == v.shape and \
                    lse.id not in taken:
                found[node.id] = lse
                taken.add(lse.id)
    return found


def _unneeded_subs(order: list[Node], fused: dict[int, Node], emitted: Sequence[Node]
                   ) -> set[int]:
    """The ``v - logsumexp(v)`` nodes of fused softmaxes that nothing else uses."""
    subs = {n.args[0].id for n in order if n.id in fused}
    for node in order:
        if node.id not in fused:
            subs.difference_update(a.id for a in node.args)
    return subs - {r.id for r in emitted}


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
