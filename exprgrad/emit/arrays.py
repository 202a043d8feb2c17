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
``dtype`` (``"float64"``, the default, or ``"float32"``) is the module's one float type, recorded
as its ``DTYPE`` constant: every function converts its arguments and parameters with
``np.asarray(x, np.float32)``, every array the module creates (``np.ones``, ``np.empty``,
``np.full``, 0/1 indicators, a stack or broadcast of a constant) takes it, and scalar constants in
arithmetic are Python floats, which numpy 2 (NEP 50) never lets upcast an array; so a float32
module computes in float32 throughout, with no float64 temporary.
Numbers follow the numeric policy of :mod:`exprgrad.ir.ops` through numpy's IEEE arithmetic (numpy
may print RuntimeWarnings for domain errors). The output passes :mod:`exprgrad.emit.verify`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ExprgradValueError
from ..ir.derive import derivatives, vjp
from ..ir.graph import no_gc
from ..ir.node import Node, depends_on, reachable
from ..ir.ops import OPS, NpCtx, np_t
from ..ir.program import Function, Program
from .module import ENTRY_KINDS, ModuleWriter
from .names import Scope, ident_part
from .steps import SETTINGS, STATE, STEP_KINDS, step_doc, update
from .verify import verify_module

#: write results into dead temporaries (off only to measure what it saves: benchmarks/ablation.py)
REUSE_BUFFERS = True
#: compute logsumexp's gradient from its forward exponentials (likewise)
SHARE_SOFTMAX = True
#: the float types a numpy module may compute in, with the numpy expression naming each
DTYPES = {"float64": "np.float64", "float32": "np.float32"}


def check_dtype(dtype: str, backend: str = "numpy") -> str:
    """``dtype`` if it is one of :data:`DTYPES` and ``backend`` computes in it; else a user
    error (the python backend computes with Python floats: float64 only)."""
    if dtype not in DTYPES:
        raise ExprgradValueError(f"no dtype {dtype!r}",
                                 hint="dtypes: float64 (the default), float32 (numpy backend)")
    if dtype != "float64" and backend != "numpy":
        raise ExprgradValueError(
            f"dtype {dtype} needs the numpy backend; the {backend} backend computes with Python "
            "floats (float64)", hint="choose the numpy backend: --backend numpy on the command "
            "line, backend='numpy' in Python, backend=numpy in a train statement")
    return dtype


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
        for i, node in enumerate(order):
            for r in roots[node.id]:
                death[r] = max(death.get(r, -1), last.get(node.id, i))
        self.roots = roots
        self.death = death
        self.dies_at: dict[int, list[int]] = {}
        for r, i in death.items():
            if r in batched and r not in known:
                self.dies_at.setdefault(i, []).append(r)


@dataclass(frozen=True)
class Assign:
    """``target = value``: a local name (or a slice of the gradient array) and one array
    expression, written from names the module's namer gave out."""

    target: str
    value: str


@dataclass(frozen=True)
class Comment:
    """``# line N``: where the following statements come from in the .exg file."""

    line: int


Statement = Assign | Comment


def _print(statements: Sequence[Statement]) -> list[str]:
    return [f"    # line {s.line}" if isinstance(s, Comment) else f"    {s.target} = {s.value}"
            for s in statements]


class _Writer:
    """The module's functions, written into the shared module writer; temporaries are numbered
    across the module."""

    def __init__(self, program: Program, dtype: str) -> None:
        self.program = program
        self.graph = program.graph
        self.dtype = DTYPES[dtype]  # the numpy expression of the module's float type
        self.module = ModuleWriter(program, "numpy", "np", dtype=dtype)
        self.uses = self.module.uses
        self.uses["np"]  # every function converts its inputs with np.asarray

    def function(self, kind: str, fn: Function, roots: list[Node], doc: str,
                 param_grads: list[Node] | None, n_arg_grads: int = 0) -> None:
        """The function of ``kind`` for ``fn``: computes ``roots`` (outputs first); with
        ``param_grads``, returns the outputs and the flat parameter gradient summed over the
        batch; for ``vjp``, then the last ``n_arg_grads`` roots per example."""
        f = _Function(self, fn, roots, param_grads)
        ret = f.build(per_example_grads=param_grads is None and kind == "grad")
        if kind == "vjp":
            args = [f._per_example(r) for r in roots[len(roots) - n_arg_grads:]]
            ret += ", (" + ", ".join(args) + ("," if len(args) == 1 else "") + ")"
        name = self.module.entry(fn.name, kind)
        self.module.add("\n".join([f"def {name}({', '.join(f.sig)}):", f'    """{doc}"""',
                                   *_print(f.head), *_print(f.body), f"    return {ret}"]))


    def step(self, fn: Function, roots: list[Node], grads: list[Node], optimizer: str) -> None:
        """The training step of ``optimizer`` for the loss ``fn`` (see
        :mod:`exprgrad.emit.steps`): ``f_grad``'s statements, then the update on whole arrays,
        written by the optimizers' one formula through :class:`_ArrayAlgebra`."""
        f = _Function(self, fn, roots, grads)
        f.build(per_example_grads=False)
        alg = _ArrayAlgebra(f)
        names = {n: f.scope.fresh(n) for n in (*STATE[optimizer], *SETTINGS[optimizer], "scale")}
        alg.scalars.update(names.values())
        state: dict[str, Any] = {}
        for n in STATE[optimizer]:
            if n == "t":
                state[n] = names[n]
            else:
                local = f.fresh(n)
                f.head.append(Assign(local, f"np.asarray({names[n]}, {self.dtype})"))
                state[n] = [local]
        new, new_state = update(alg, optimizer, [f.p], [f.g], state,
                                {n: names[n] for n in SETTINGS[optimizer]}, names["scale"])
        sig = [f.sig[0], *(names[n] for n in STATE[optimizer]), *f.sig[1:],
               *(names[n] for n in SETTINGS[optimizer]), f"{names['scale']}=1.0"]
        returned = [f"{f._per_example(fn.outputs[0])}.sum()", new[0], *(v[0] for v in new_state)]
        name = self.module.entry(fn.name, STEP_KINDS[optimizer])
        doc = step_doc(fn.name, optimizer).replace("(one sequence per argument)",
                                                    "(arrays with the batch first)")
        self.module.add("\n".join([f"def {name}({', '.join(sig)}):", f'    """{doc}"""',
                                   *_print(f.head), *_print(f.body),
                                   f"    return {', '.join(returned)}"]))


class _ArrayAlgebra:
    """The element algebra of :func:`exprgrad.emit.steps.update` over whole arrays: an "element"
    is a flat vector (the parameters, the gradient, a state vector) or a Python number (a
    setting, ``t``); each operation is one statement, printed by the op table's numpy emitter
    for arrays and its Python emitter for numbers (so a number never becomes a numpy scalar,
    which would make float32 arrays float64)."""

    def __init__(self, f: _Function) -> None:
        self.f = f
        self.scalars: set[str] = set()  # the names holding Python numbers

    def scalar(self, op: str, args: Sequence[Any]) -> str:
        uses = self.f.w.uses
        texts = [a if isinstance(a, str) else uses.const(a) for a in args]
        spec = OPS[op]
        local = self.f.fresh(None)
        if all(isinstance(a, float) or a in self.scalars for a in args):
            assert spec.py is not None, f"{op} has no Python emitter"
            text = spec.py(texts, [a if isinstance(a, float) else None for a in args], uses)
            self.scalars.add(local)
        else:
            assert spec.np is not None, f"{op} has no numpy emitter"
            # a setting may be a numpy scalar (np.float64(0.1), np.int64(t)), which would make a
            # float32 array float64: it is given the module's type
            texts = [f"{self.f.w.dtype}({t})" if isinstance(a, str) and a in self.scalars
                     else t for t, a in zip(texts, args)]
            ctx = NpCtx([False] * len(args), [()] * len(args), (), self.f.B,
                        [a if isinstance(a, float) else None for a in args], self.f.ones_of,
                        self.f.w.dtype)
            text = spec.np(texts, None, ctx)
        self.f.body.append(Assign(local, text))
        return local


class _Function:
    """One generated function, written in order: the arguments, the parameter views, the planned
    array operations, then the return value (after the parameter gradient's assembly)."""

    def __init__(self, writer: _Writer, fn: Function, roots: list[Node],
                 param_grads: list[Node] | None) -> None:
        self.w, self.fn, self.roots, self.param_grads = writer, fn, roots, param_grads
        self.scope: Scope = writer.module.namer.scope(module_wide_numbers=True)
        self.head: list[Statement] = []  # arguments, views and hoisted constants
        self.body: list[Statement] = []
        self.env: dict[int, tuple[str, bool]] = {}  # node id -> (expression, batched)
        self.ones: dict[str, str] = {}
        self.layouts: dict[str, str] = {}
        self.free: dict[tuple[int, ...], list[str]] = {}  # per-example shape -> dead arrays
        self.lse_parts: dict[int, tuple[str, str]] = {}  # logsumexp node -> (exp(v - m), sum)
        params = self.scope.fresh("params") if fn.uses_params else None
        self.sig = [self.scope.fresh(a) for a in fn.arg_names]
        for node, arg, pyname in zip(fn.inputs, fn.arg_names, self.sig):
            local = self.scope.fresh(f"_{ident_part(arg)}")
            self.head.append(Assign(local, f"np.asarray({pyname}, {writer.dtype})"))
            self.env[node.id] = (local, True)
        self.batch = bool(fn.inputs)
        self.B = self.scope.fresh("_B")  # the batch size
        if self.batch:
            self.head.append(Assign(self.B, f"len({self.env[fn.inputs[0].id][0]})"))
        for node in fn.inputs:  # one value per example, of the argument's shape
            local = self.env[node.id][0]
            dims = "".join(f", {d}" for d in node.shape)
            self.head.append(Assign(local, f"{writer.uses['_batch_of']}({local}, {self.B}{dims})"))
        self.g = self.scope.fresh("_g")  # the flat parameter gradient
        if params is not None:
            self.sig.insert(0, params)
            self._parameters(params)
        self.batched = depends_on(roots, {n.id for n in fn.inputs})

    def ones_of(self, n: int | str) -> str:
        """A vector of ``n`` ones (``self.B``: one per example), created once at the top."""
        key = str(n)
        if key not in self.ones:
            self.ones[key] = self.scope.fresh("_onesB" if key == self.B else f"_ones{key}")
            self.head.append(Assign(self.ones[key], f"np.ones({key}, {self.w.dtype})"))
        return self.ones[key]

    def fresh(self, hint: str | None) -> str:
        return self.scope.temp(hint or "t")

    def _parameters(self, params: str) -> None:
        """A view of the flat ``params`` per parameter tensor (a gather where none exists)."""
        program = self.w.program
        self.p = self.scope.fresh("_p")
        self.head.append(Assign(self.p, f"np.asarray({params}, {self.w.dtype})"))
        where: dict[str, list[int]] = {t: [0] * program.params[t].node.size
                                       for t in program.params}
        for pos, (t, i) in enumerate(program.param_order):
            where[t][i] = pos
        for t, pt in program.params.items():
            spec = _layout(where[t], pt.node.shape, len(program.param_order))
            local = self.fresh(t)
            if spec is None:
                spec = "[" + ", ".join(map(str, where[t])) + "]"
                dims = ", ".join(map(str, pt.node.shape))
                self.head.append(Assign(local, f"np.reshape({self.p}[np.asarray({spec})], "
                                        f"({dims},))"))
            else:
                self.head.append(Assign(local, _view(self.p, spec)))
            self.layouts[t] = spec
            self.env[pt.node.id] = (local, False)

    def build(self, per_example_grads: bool) -> str:
        """Write the body; returns the return expression."""
        known = set(self.env)
        # a batched outer product that is a parameter gradient is never formed: its batch sum
        # is one matrix product of its two factors (see _gradient)
        outer_grads = {g.id for g in self.param_grads or []
                       if g.op == "outer" and all(a.id in self.batched for a in g.args)}
        emitted = [x for x in self.roots if x.id not in outer_grads] + [
            a for g in self.param_grads or [] if g.id in outer_grads for a in g.args]
        order = [n for n in reachable(emitted) if n.id not in known]
        fused = _softmax_of_lse(order) if SHARE_SOFTMAX else {}
        unneeded = _unneeded_subs(order, fused, emitted)
        order = [n for n in order if n.id not in unneeded]
        plan = _Plan(order, emitted, known, self.batched, fused)
        self._emit(order, plan, fused)
        outs = [self._per_example(r) for r in self.fn.outputs]
        value = outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ")"
        if per_example_grads:
            grads = [self._per_example(r) for r in self.roots[len(self.fn.outputs):]]
            return f"{value}, ({', '.join(grads)}{',' if len(grads) == 1 else ''})"
        if self.param_grads is None:
            return value
        self.body.append(Assign(self.g, f"np.empty({len(self.w.program.param_order)}, "
                                f"{self.w.dtype})"))
        for t, g in zip(self.w.program.params, self.param_grads):
            self.body.append(self._gradient(g, self.layouts[t], g.id in outer_grads))
        return f"{value}, {self.g}"

    def _emit(self, order: list[Node], plan: _Plan, fused: dict[int, Node]) -> None:
        """One statement per node (none for constants, aliases and parameter transposes)."""
        env, graph = self.env, self.w.graph
        by_id = {n.id: n for n in order}
        shared = {lse.id for lse in fused.values()}
        last_line = None
        for i, node in enumerate(order):
            if node.op == "const":
                number = float(node.attr)
                if node.shape == ():
                    env[node.id] = (self.w.uses.const(number), False)
                else:
                    local = self.fresh(None)
                    dims = ", ".join(map(str, node.shape))
                    self.body.append(Assign(local, f"np.full(({dims},), "
                                            f"{self.w.uses.const(number)}, {self.w.dtype})"))
                    env[node.id] = (local, False)
                continue
            if node.op == "custom":
                env[node.id] = env[node.args[node.attr[0]].id]
                continue
            if node.op == "transpose" and node.id not in self.batched:  # a view, inline
                env[node.id] = (np_t(env[node.args[0].id][0]), False)
                continue
            span = graph.spans.get(node.id)
            if span and span.line != last_line:
                self.body.append(Comment(span.line))
                last_line = span.line
            local = self.fresh(graph.names.get(node.id))
            taken: str | None = None  # the dead array this result is written into
            if node.op == "logsumexp":
                self._logsumexp(node, local, shared=node.id in shared)
            elif node.id in fused:
                e, esum = self.lse_parts[fused[node.id].id]
                self.body.append(Assign(local, f"np.divide({e}, {esum}[..., None], {e})"
                                        if node.id in self.batched else f"{e} / {esum}"))
            else:
                taken = self._operation(node, local, i, plan)
            env[node.id] = (local, node.id in self.batched)
            for r in plan.dies_at.get(i, ()):
                if env[r][0] != taken:
                    self.free.setdefault(by_id[r].shape, []).append(env[r][0])

    def _operation(self, node: Node, local: str, i: int, plan: _Plan) -> str | None:
        """Emit one array operation; returns the dead array it was written into, if any."""
        op = OPS[node.op]
        args = [self.env[a.id] for a in node.args]
        batched = [b for _, b in args]
        texts = [t for t, _ in args]
        if op.elementwise and any(batched):
            rank = len(node.shape)
            texts = [t + ("[" + ", ".join([":"] + ["None"] * (rank - len(a.shape))) + "]"
                          if b and len(a.shape) < rank else "")
                     for t, b, a in zip(texts, batched, node.args)]
        consts = [float(a.attr) if a.op == "const" and a.shape == () else None
                  for a in node.args]
        if not op.elementwise:  # a constant that a tensor op makes an array of: typed
            texts = [t if k is None else f"{self.w.dtype}({t})" for t, k in zip(texts, consts)]
        ctx = NpCtx(batched, [a.shape for a in node.args], node.shape, self.B, consts,
                    self.ones_of, self.w.dtype)
        if op.np_into is not None and node.id in self.batched and REUSE_BUFFERS:
            target = None
            if op.elementwise:  # an argument that dies here can take the result in place
                for a in node.args:
                    if (a.id in self.batched and plan.roots.get(a.id) == (a.id,)
                            and plan.death.get(a.id) == i and a.shape == node.shape):
                        target = self.env[a.id][0]
                        break
            pool = self.free.get(node.shape)
            if target is None and pool:
                target = pool[-1]
            text = op.np_into(texts, node.attr, ctx, target) if target else None
            if text is not None:
                if pool and target == pool[-1]:
                    pool.pop()
                self.body.append(Assign(local, text))
                return target
        assert op.np is not None, f"{node.op} has no numpy emitter"
        self.body.append(Assign(local, op.np(texts, node.attr, ctx)))
        return None

    def _logsumexp(self, node: Node, local: str, shared: bool) -> None:
        """log(sum(exp(v))) as m + log(sum(exp(v - m))), m = max(v), computing max once.

        The exponentials and their sum are kept for the gradient's softmax (``shared``), which
        then costs one division instead of a second pass of exponentials.
        """
        v, batched = self.env[node.args[0].id]
        shape = node.args[0].shape
        m, e, total = self.fresh("max"), self.fresh("exp"), self.fresh("sumexp")
        body = self.body
        if batched and shape[0] <= 16:  # numpy reduces short rows slowly: 4x faster by columns
            body.append(Assign(m, f"np.ascontiguousarray({v}.T).max(0)"))
        else:
            body.append(Assign(m, f"{v}.max(-1)"))
        pool = self.free.get(shape) if batched and REUSE_BUFFERS else None
        if pool:
            body.append(Assign(e, f"np.subtract({v}, {m}[..., None], {pool.pop()})"))
            body.append(Assign(e, f"np.exp({e}, {e})"))
        elif batched:
            body.append(Assign(e, f"{v} - {m}[..., None]"))
            body.append(Assign(e, f"np.exp({e}, {e})"))
        else:
            body.append(Assign(e, f"np.exp({v} - {m}[..., None])"))
        body.append(Assign(total, f"{e} @ {self.ones_of(shape[0])}"))
        if batched:
            body.append(Assign(local, f"np.log({total})"))
            body.append(Assign(local, f"np.add({local}, {m}, {local})"))
            if not shared:
                self.free.setdefault(shape, []).append(e)
        else:
            body.append(Assign(local, f"np.log({total}) + {m}"))
        self.lse_parts[node.id] = (e, total)

    def _gradient(self, g: Node, spec: str, outer: bool) -> Assign:
        """The statement storing one parameter tensor's gradient, summed over the batch."""
        env = self.env
        if g.id in env and not env[g.id][1]:  # the same for every example: B times it
            value, product = (f"{self.B} * {env[g.id][0]}" if self.batch else env[g.id][0]), None
        elif outer:  # sum over the batch of outer(a, b) = a.T @ b
            a, b = (env[x.id][0] for x in g.args)
            value, product = f"{a}.T @ {b}", (f"{a}.T", b)
        elif len(g.shape) <= 1:
            t = env[g.id][0]
            value, product = f"{self.ones_of(self.B)} @ {t}", (self.ones_of(self.B), t)
        else:
            value, product = f"{env[g.id][0]}.sum(0)", None
        if spec.startswith("["):
            return Assign(f"{self.g}[np.asarray({spec})]", f"np.reshape({value}, (-1,))")
        if product is None or g.shape == ():
            target = _view(self.g, spec)
            return Assign(target + ("[...]" if target.endswith(")") else ""), value)
        return Assign(self.fresh("dw"),
                      f"np.matmul({product[0]}, {product[1]}, {_view(self.g, spec)})")

    def _per_example(self, node: Node) -> str:
        """A returned value, as an array with the batch axis even where it is constant."""
        text, batched = self.env[node.id]
        if batched or not self.batch:
            return text
        return f"np.full(({', '.join([self.B, *map(str, node.shape)])},), {text}, " \
            f"{self.w.dtype})"


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


def generate_numpy(program: Program, *, verify: bool = True, dtype: str = "float64",
                   kinds: Collection[str] | None = None, steps: Sequence[str] = ("sgd",)) -> str:
    """The numpy-backend module for a program (see the module docstring), computing in
    ``dtype`` (``"float64"`` or ``"float32"``; anything else is an ExprgradValueError).
    ``kinds`` (default: all) names the generated functions wanted for each def (``value``,
    ``grad``, ``vjp``, ``step``...); every loss of parameters and arguments gets the training
    step of each optimizer in ``steps`` whose kind is wanted."""
    check_dtype(dtype)
    wanted = set(ENTRY_KINDS if kinds is None else kinds)
    with no_gc():
        writer = _Writer(program, dtype)
        for fname, fn in program.functions.items():
            if "value" in wanted:
                writer.function("value", fn, list(fn.outputs), f"{fname}, batched.", None)
            if "vjp" in wanted:
                _vjp_function(writer, program, fn)
            looped = [o for o in steps if STEP_KINDS[o] in wanted]
            if len(fn.outputs) != 1 or not ("grad" in wanted or looped):
                continue  # gradients are for functions of one output
            derived = derivatives(program, fn)
            if fn.uses_params:
                if fn.outputs[0].shape != ():
                    continue  # parameter gradients are for scalar losses
                grads = derived.grads[0]
                if "grad" in wanted:
                    writer.function("grad", fn, [*fn.outputs, *grads],
                                    f"(values, gradient summed over the batch) of {fname}.",
                                    grads)
                if fn.inputs:
                    for optimizer in looped:
                        writer.step(fn, [*fn.outputs, *grads], grads, optimizer)
            elif "grad" in wanted:
                writer.function("grad", fn, [*fn.outputs, *derived.grads[0]],
                                f"(values, per-example gradients) of {fname}.", None)
        code = writer.module.render(
            "Batched numpy forward and gradient code compiled from {label} by exprgrad.")
        if verify:
            verify_module(code)
        return code


def _vjp_function(writer: _Writer, program: Program, fn: Function) -> None:
    """``f_vjp``: values, the parameter cotangent summed over the batch, per-example argument
    cotangents."""
    v = vjp(program, fn)
    n_tensors = len(program.params) if fn.uses_params else 0
    douts = ["dout"] if len(fn.outputs) == 1 else [
        f"dout{k + 1}" for k in range(len(fn.outputs))]
    with_douts = replace(fn, inputs=[*fn.inputs, *v.douts],
                         arg_names=[*fn.arg_names, *douts],
                         arg_shapes=[*fn.arg_shapes, *(o.shape for o in fn.outputs)])
    summed = "parameter cotangent summed over the batch, " if n_tensors else ""
    writer.function("vjp", with_douts, [*fn.outputs, *v.cotangents],
                    f"(values, {summed}per-example argument cotangents) of {fn.name} for "
                    f"the per-example output cotangent {', '.join(douts)}.",
                    v.cotangents[:n_tensors] if n_tensors else None,
                    len(v.cotangents) - n_tensors)
