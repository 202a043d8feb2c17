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

Every function is written twice (unless ``array_api=False``): numpy code, whose first statement
hands arrays of another library (PyTorch, CuPy, JAX, array-api-strict: anything
``array_api_compat`` recognises that is not numpy) to its twin ``_<name>_xp``; and that twin, the
same computation in the array API standard (2023.12) on the namespace ``xp`` of its arguments
(``array_api_compat.array_namespace``), arrays made on their device, nothing written in place,
constants handed to functions as 0-d arrays, the flat parameter gradient concatenated from the
tensors' gradients (:func:`_gradient_blocks`). numpy arrays, lists and numbers run numpy's code.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
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


def _view(base: str, spec: str, xp: bool = False) -> str:
    """The expression for a parameter tensor's view of the flat vector ``base`` (``xp``: in
    array-API code, where ``reshape`` is a function; a copy or a view, as the library does)."""
    if spec.startswith("reshape:"):
        _, a, b, m, r, n = spec.split(":")
        view = f"xp.reshape({base}[{a}:{b}], ({m}, {r}))" if xp else \
            f"{base}[{a}:{b}].reshape({m}, {r})"
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
    across the module. With ``array_api``, every function is written twice: numpy code, which
    first hands arrays of other libraries to its array-API twin, and that twin."""

    def __init__(self, program: Program, dtype: str, array_api: bool = True) -> None:
        self.program = program
        self.graph = program.graph
        self.dtype_name = dtype
        self.dtype = DTYPES[dtype]  # the numpy expression of the module's float type
        self.array_api = array_api
        self.module = ModuleWriter(program, "numpy", "np", dtype=dtype, twins=array_api)
        self.uses = self.module.uses
        self.uses["np"]  # every function converts its inputs with np.asarray
        self._blocks: list[_Block] | None = None

    def blocks(self) -> list[_Block]:
        """How the flat gradient is assembled from the tensors' gradients (array-API code)."""
        if self._blocks is None:
            self._blocks = _gradient_blocks(self.program)
        return self._blocks

    def _emit(self, kind: str, fname: str, build: Callable[[bool], tuple[_Function, str, str]],
              array_args: Callable[[_Function], list[str]]) -> None:
        """Write the function of ``kind`` for ``fname`` (and its array-API twin): ``build(xp)``
        gives ``(function, signature text, return expression)``."""
        name = self.module.entry(fname, kind)
        f, sig, ret = build(False)
        head = []
        twin = self.module.twin(fname, kind) if self.array_api else None
        arrays = array_args(f)
        if twin is not None and arrays:
            same = " is ".join(f"type({a})" for a in arrays)
            head = [f"    if not ({same} is np.ndarray) and "
                    f"{self.uses['_foreign']}({', '.join(arrays)}):",
                    f"        return {twin}({', '.join(f.sig_names)})"]
        self.module.add("\n".join([f"def {name}({sig}):", f'    """{f.doc}"""', *head,
                                   *_print(f.head), *_print(f.body), f"    return {ret}"]))
        if twin is None or not arrays:
            return
        g, sig, ret = build(True)
        start = Assign(f"{XP}, {g.dev}", f"{self.uses['_namespace']}({', '.join(arrays)})")
        self.module.add("\n".join([
            f"def {twin}({sig}):",
            f'    """{name} in array-API code, for arrays of another library than numpy."""',
            *_print([start, *g.head]), *_print(g.body), f"    return {ret}"]))

    def function(self, kind: str, fn: Function, roots: list[Node], doc: str,
                 param_grads: list[Node] | None, n_arg_grads: int = 0) -> None:
        """The function of ``kind`` for ``fn``: computes ``roots`` (outputs first); with
        ``param_grads``, returns the outputs and the flat parameter gradient summed over the
        batch; for ``vjp``, then the last ``n_arg_grads`` roots per example."""

        def build(xp: bool) -> tuple[_Function, str, str]:
            f = _Function(self, fn, roots, param_grads, xp)
            f.doc = doc
            ret = f.build(per_example_grads=param_grads is None and kind == "grad")
            if kind == "vjp":
                args = [f._per_example(r) for r in roots[len(roots) - n_arg_grads:]]
                ret += ", (" + ", ".join(args) + ("," if len(args) == 1 else "") + ")"
            f.sig_names = list(f.sig)
            return f, ", ".join(f.sig), ret

        self._emit(kind, fn.name, build, lambda f: list(f.sig))

    def step(self, fn: Function, roots: list[Node], grads: list[Node], optimizer: str) -> None:
        """The training step of ``optimizer`` for the loss ``fn`` (see
        :mod:`exprgrad.emit.steps`): ``f_grad``'s statements, then the update on whole arrays,
        written by the optimizers' one formula through :class:`_ArrayAlgebra`."""
        vectors: list[str] = []

        def build(xp: bool) -> tuple[_Function, str, str]:
            f = _Function(self, fn, roots, grads, xp)
            f.build(per_example_grads=False)
            alg = _ArrayAlgebra(f)
            names = {n: f.scope.fresh(n)
                     for n in (*STATE[optimizer], *SETTINGS[optimizer], "scale")}
            alg.scalars.update(names.values())
            state: dict[str, Any] = {}
            for n in STATE[optimizer]:
                if n == "t":
                    state[n] = names[n]
                else:
                    local = f.fresh(n)
                    f.head.append(Assign(local, f.asarray(names[n])))
                    state[n] = [local]
            new, new_state = update(alg, optimizer, [f.p], [f.g], state,
                                    {n: names[n] for n in SETTINGS[optimizer]}, names["scale"])
            f.sig_names = [f.sig[0], *(names[n] for n in STATE[optimizer]), *f.sig[1:],
                           *(names[n] for n in SETTINGS[optimizer]), names["scale"]]
            sig = [*f.sig_names[:-1], f"{names['scale']}=1.0"]
            vectors[:] = [f.sig[0], *(names[n] for n in STATE[optimizer] if n != "t"),
                          *f.sig[1:]]
            total = f._per_example(fn.outputs[0])
            returned = [f"{XP}.sum({total})" if xp else f"{total}.sum()", new[0],
                        *(v[0] for v in new_state)]
            f.doc = step_doc(fn.name, optimizer).replace("(one sequence per argument)",
                                                         "(arrays with the batch first)")
            return f, ", ".join(sig), ", ".join(returned)

        self._emit(STEP_KINDS[optimizer], fn.name, build, lambda f: list(vectors))


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
        texts = [a if isinstance(a, str) else self.f.const(a) for a in args]
        spec = OPS[op]
        local = self.f.fresh(None)
        if all(isinstance(a, float) or a in self.scalars for a in args):
            assert spec.py is not None, f"{op} has no Python emitter"
            # settings as Python floats: Adam's t given as a 0-d tensor (or np.int64) would
            # otherwise compute beta ** t in its own (float32) type
            texts = [f"float({t})" if isinstance(a, str) else t for t, a in zip(texts, args)]
            text = spec.py(texts, [a if isinstance(a, float) else None for a in args], uses)
            self.scalars.add(local)
        else:
            emit = spec.xp if self.f.xp else spec.np
            assert emit is not None, f"{op} has no array emitter"
            # a setting may be a numpy scalar (np.float64(0.1), np.int64(t)), which would make a
            # float32 array float64: it is given the module's type (array-API code: a Python
            # float, which the standard never lets change an array's type)
            texts = [(f"float({t})" if self.f.xp else f"{self.f.dtype}({t})")
                     if isinstance(a, str) and a in self.scalars else t
                     for t, a in zip(texts, args)]
            if self.f.xp and spec.xp_calls:  # numbers in the standard's functions: 0-d arrays
                texts = [self.f.typed(a) if isinstance(a, float) else t
                         for t, a in zip(texts, args)]
            ctx = NpCtx([False] * len(args), [()] * len(args), (), self.f.B,
                        [a if isinstance(a, float) else None for a in args], self.f.ones_of,
                        self.f.dtype, self.f.xp, self.f.typed)
            text = emit(texts, None, ctx)
        self.f.body.append(Assign(local, text))
        return local


#: the name of the array namespace in array-API code (reserved: see exprgrad.emit.names)
XP = "xp"


class _Function:
    """One generated function, written in order: the arguments, the parameter views, the planned
    array operations, then the return value (after the parameter gradient's assembly). With
    ``xp``, in array-API code: every call is one of the standard's functions on the namespace
    ``xp`` (the arguments', found by ``_namespace``), arrays are made on the arguments' device
    ``_dev``, nothing is written in place and the flat gradient is concatenated, not filled."""

    def __init__(self, writer: _Writer, fn: Function, roots: list[Node],
                 param_grads: list[Node] | None, xp: bool = False) -> None:
        self.w, self.fn, self.roots, self.param_grads = writer, fn, roots, param_grads
        self.xp = xp
        self.scope: Scope = writer.module.namer.scope(module_wide_numbers=True)
        self.doc = ""
        self.sig_names: list[str] = []
        self.head: list[Statement] = []  # arguments, views and hoisted constants
        self.body: list[Statement] = []
        self.env: dict[int, tuple[str, bool]] = {}  # node id -> (expression, batched)
        self.ones: dict[str, str] = {}
        self.typed_consts: dict[str, str] = {}
        self.layouts: dict[str, str] = {}
        self.free: dict[tuple[int, ...], list[str]] = {}  # per-example shape -> dead arrays
        self.lse_parts: dict[int, tuple[str, str]] = {}  # logsumexp node -> (exp(v - m), sum)
        #: the module's float type, as numpy code or array-API code names it
        self.dtype = f"{XP}.{writer.dtype_name}" if xp else writer.dtype
        params = self.scope.fresh("params") if fn.uses_params else None
        self.sig = [self.scope.fresh(a) for a in fn.arg_names]
        self.dev = self.scope.fresh("_dev") if xp else ""  # the arguments' device
        for node, arg, pyname in zip(fn.inputs, fn.arg_names, self.sig):
            local = self.scope.fresh(f"_{ident_part(arg)}")
            self.head.append(Assign(local, self.asarray(pyname)))
            self.env[node.id] = (local, True)
        self.batch = bool(fn.inputs)
        self.B = self.scope.fresh("_B")  # the batch size
        if self.batch:
            first = self.env[fn.inputs[0].id][0]
            self.head.append(Assign(self.B, f"{first}.shape[0]" if xp else f"len({first})"))
        for node in fn.inputs:  # one value per example, of the argument's shape
            local = self.env[node.id][0]
            dims = "".join(f", {d}" for d in node.shape)
            self.head.append(Assign(local, f"{writer.uses['_batch_of']}({local}, {self.B}{dims})"))
        self.g = self.scope.fresh("_g")  # the flat parameter gradient
        if params is not None:
            self.sig.insert(0, params)
            self._parameters(params)
        self.batched = depends_on(roots, {n.id for n in fn.inputs})

    def asarray(self, name: str) -> str:
        """An argument as an array of the module's type (on the arguments' device)."""
        if self.xp:
            return f"{XP}.asarray({name}, dtype={self.dtype}, device={self.dev})"
        return f"np.asarray({name}, {self.dtype})"

    def made(self, fn: str, shape: str, *values: str) -> str:
        """A new array of the module's type: ``np.ones(shape, dtype)``, ``np.full(...)``..."""
        if self.xp:
            return f"{XP}.{fn}({', '.join([shape, *values])}, dtype={self.dtype}, " \
                f"device={self.dev})"
        return f"np.{fn}({', '.join([shape, *values, self.dtype])})"

    def const(self, value: float) -> str:
        """A number as generated code writes it (``np.inf``; ``xp.inf`` in array-API code)."""
        text = self.w.uses.const(value)
        return text.replace("np.", f"{XP}.") if self.xp else text

    def typed(self, value: float) -> str:
        """A number as an array of the module's type: ``np.float64(c)``, or in array-API code
        a 0-d array on the arguments' device, made once at the top."""
        text = self.const(value)
        if not self.xp:
            return f"{self.dtype}({text})"
        if text not in self.typed_consts:
            self.typed_consts[text] = self.scope.temp("c")
            self.head.append(Assign(self.typed_consts[text], self.made("asarray", text)))
        return self.typed_consts[text]

    def ones_of(self, n: int | str) -> str:
        """A vector of ``n`` ones (``self.B``: one per example), created once at the top."""
        key = str(n)
        if key not in self.ones:
            self.ones[key] = self.scope.fresh("_onesB" if key == self.B else f"_ones{key}")
            self.head.append(Assign(self.ones[key], self.made("ones", key)))
        return self.ones[key]

    def fresh(self, hint: str | None) -> str:
        return self.scope.temp(hint or "t")

    def _parameters(self, params: str) -> None:
        """A view of the flat ``params`` per parameter tensor (a gather where none exists)."""
        program = self.w.program
        self.p = self.scope.fresh("_p")
        self.head.append(Assign(self.p, self.asarray(params)))
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
                if self.xp:
                    self.head.append(Assign(local, f"{XP}.reshape({XP}.take({self.p}, "
                                            f"{XP}.asarray({spec}, device={self.dev})), "
                                            f"({dims},))"))
                else:
                    self.head.append(Assign(local, f"np.reshape({self.p}[np.asarray({spec})], "
                                            f"({dims},))"))
            else:
                self.head.append(Assign(local, _view(self.p, spec, self.xp)))
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
        if self.xp:
            self._concatenated(outer_grads)
            return f"{value}, {self.g}"
        self.body.append(Assign(self.g, self.made("empty", str(len(self.w.program.param_order)))))
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
                    env[node.id] = (self.const(number), False)
                else:
                    local = self.fresh(None)
                    dims = ", ".join(map(str, node.shape))
                    self.body.append(Assign(local, self.made("full", f"({dims},)",
                                                             self.const(number))))
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
                if node.id not in self.batched:
                    text = f"{e} / {esum}"
                elif self.xp:
                    text = f"{e} / {esum}[..., None]"
                else:
                    text = f"np.divide({e}, {esum}[..., None], {e})"
                self.body.append(Assign(local, text))
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
            texts = [t if k is None else self.typed(k) for t, k in zip(texts, consts)]
        ctx = NpCtx(batched, [a.shape for a in node.args], node.shape, self.B, consts,
                    self.ones_of, self.dtype, self.xp, self.typed)
        if self.xp:
            assert op.xp is not None, f"{node.op} has no array-API emitter"
            xp_text = op.xp(texts, node.attr, ctx)
            if f"{XP}." in xp_text and any(k is not None for k in consts):
                # the standard's functions take arrays, not numbers: the constants as 0-d arrays
                texts = [t if k is None else self.typed(k) for t, k in zip(texts, consts)]
                xp_text = op.xp(texts, node.attr, ctx)
            self.body.append(Assign(local, xp_text))
            return None
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
        if self.xp:  # the same arithmetic, in the standard's functions
            body.append(Assign(m, f"{XP}.max({v}, axis=-1)"))
            body.append(Assign(e, f"{XP}.exp({v} - {m}[..., None])"))
            body.append(Assign(total, f"{e} @ {self.ones_of(shape[0])}"))
            body.append(Assign(local, f"{XP}.log({total}) + {m}"))
            self.lse_parts[node.id] = (e, total)
            return
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

    def _summed(self, g: Node, outer: bool) -> tuple[str, tuple[str, str] | None]:
        """One parameter tensor's gradient summed over the batch: ``(expression, (a, b))``,
        the second when the expression is the matrix product ``a @ b``."""
        env = self.env
        if g.id in env and not env[g.id][1]:  # the same for every example: B times it
            return (f"{self.B} * {env[g.id][0]}" if self.batch else env[g.id][0]), None
        if outer:  # sum over the batch of outer(a, b) = a.T @ b
            a, b = (env[x.id][0] for x in g.args)
            return f"{a}.T @ {b}", (f"{a}.T", b)
        if len(g.shape) <= 1:
            t = env[g.id][0]
            return f"{self.ones_of(self.B)} @ {t}", (self.ones_of(self.B), t)
        if self.xp:
            return f"{XP}.sum({env[g.id][0]}, axis=0)", None
        return f"{env[g.id][0]}.sum(0)", None

    def _gradient(self, g: Node, spec: str, outer: bool) -> Assign:
        """The statement storing one parameter tensor's gradient, summed over the batch."""
        value, product = self._summed(g, outer)
        if spec.startswith("["):
            return Assign(f"{self.g}[np.asarray({spec})]", f"np.reshape({value}, (-1,))")
        if product is None or g.shape == ():
            target = _view(self.g, spec)
            return Assign(target + ("[...]" if target.endswith(")") else ""), value)
        return Assign(self.fresh("dw"),
                      f"np.matmul({product[0]}, {product[1]}, {_view(self.g, spec)})")

    def _concatenated(self, outer_grads: set[int]) -> None:
        """Array-API code: the flat gradient as one concatenation of the tensors' gradients
        (``xp.concat``; arrays may be immutable, so nothing is written into slices), in the
        blocks :func:`_gradient_blocks` found, or gathered in flat order where none fit."""
        tensors = list(self.w.program.params)
        parts: dict[str, str] = {}
        for t, g in zip(tensors, self.param_grads or []):
            value, _ = self._summed(g, g.id in outer_grads)
            local = self.fresh(f"d{t}")
            if g.shape == ():  # (a number, where the gradient is a constant)
                value = f"{XP}.asarray({value}, dtype={self.dtype}, device={self.dev})"
            self.body.append(Assign(local, value))
            parts[t] = local
        pieces = []
        for block in self.w.blocks():
            if block.gather is not None:  # no block structure: every element gathered
                flat = ", ".join(f"{XP}.reshape({parts[t]}, (-1,))" for t in tensors)
                index = f"{XP}.asarray({list(block.gather)!r}, device={self.dev})"
                pieces.append(f"{XP}.take({XP}.concat(({flat},)), {index})")
            elif block.rows == 1:
                pieces.extend(f"{XP}.reshape({parts[t]}, (-1,))" for t in block.tensors)
            else:  # rows of the tensors side by side, then flattened
                cols = ", ".join(f"{XP}.reshape({parts[t]}, ({block.rows}, {c}))"
                                 for t, c in zip(block.tensors, block.cols))
                local = self.fresh("rows")
                self.body.append(Assign(local, f"{XP}.concat(({cols},), axis=1)"))
                pieces.append(f"{XP}.reshape({local}, (-1,))")
        if len(pieces) == 1:
            self.body.append(Assign(self.g, pieces[0]))
        else:
            self.body.append(Assign(self.g, f"{XP}.concat(({', '.join(pieces)},))"))

    def _per_example(self, node: Node) -> str:
        """A returned value, as an array with the batch axis even where it is constant."""
        text, batched = self.env[node.id]
        if batched or not self.batch:
            return text
        dims = ", ".join([self.B, *map(str, node.shape)])
        if self.xp:  # (xp.full takes a number only, and the value may be a 0-d array)
            return f"{self.made('zeros', f'({dims},)')} + {text}"
        return self.made("full", f"({dims},)", text)


@dataclass(frozen=True)
class _Block:
    """A run of the flat parameter vector viewed as ``rows`` rows of ``sum(cols)`` elements,
    each tensor of ``tensors`` taking ``cols`` columns of every row in turn (a network layer:
    a neuron's weights, then its bias); or, with ``gather``, the whole vector as the
    positions of the tensors' concatenated elements, in flat order."""

    rows: int
    tensors: tuple[str, ...]
    cols: tuple[int, ...]
    gather: tuple[int, ...] | None = None


def _gradient_blocks(program: Program) -> list[_Block]:
    """The flat vector's blocks in order (see :class:`_Block`), from each tensor's layout
    (:meth:`Program.param_layout`: an offset and strides)."""
    layout = program.param_layout()
    # each tensor as (offset, rows, row stride, columns), its columns contiguous
    spans: list[tuple[int, int, int, int, str]] = []
    for t, pt in program.params.items():
        offset, strides = layout[t]
        shape, size = pt.node.shape, pt.node.size
        if len(shape) == 2 and shape[0] > 1 and strides[0] != shape[1] and (
                strides[1] == 1 or shape[1] == 1):
            spans.append((offset, shape[0], strides[0], shape[1], t))
        elif len(shape) == 1 and shape[0] > 1 and strides[0] != 1:
            spans.append((offset, shape[0], strides[0], 1, t))
        elif size == 1 or len(shape) == 1 or strides[-1] == 1:  # contiguous
            spans.append((offset, 1, size, size, t))
        else:
            return _gathered(program)
    spans.sort()
    blocks: list[_Block] = []
    pos, k = 0, 0
    while k < len(spans):
        offset, rows, stride, cols, t = spans[k]
        if offset != pos:
            return _gathered(program)
        tensors, widths, width = [t], [cols], cols
        k += 1
        while width < stride and k < len(spans) and spans[k][0] == pos + width and \
                spans[k][1:3] == (rows, stride):
            tensors.append(spans[k][4])
            widths.append(spans[k][3])
            width += spans[k][3]
            k += 1
        if width != stride:
            return _gathered(program)
        blocks.append(_Block(rows, tuple(tensors), tuple(widths)))
        pos += rows * stride
    if pos != len(program.param_order):
        return _gathered(program)
    return blocks


def _gathered(program: Program) -> list[_Block]:
    """The one gathering block: for each flat position, where its element is in the tensors'
    gradients concatenated in declaration order."""
    start, where = 0, {}
    for t, pt in program.params.items():
        where[t] = start
        start += pt.node.size
    return [_Block(0, (), (), tuple(where[t] + i for t, i in program.param_order))]


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
                   kinds: Collection[str] | None = None, steps: Sequence[str] = ("sgd",),
                   array_api: bool = True) -> str:
    """The numpy-backend module for a program (see the module docstring), computing in
    ``dtype`` (``"float64"`` or ``"float32"``; anything else is an ExprgradValueError).
    ``kinds`` (default: all) names the generated functions wanted for each def (``value``,
    ``grad``, ``vjp``, ``step``...); every loss of parameters and arguments gets the training
    step of each optimizer in ``steps`` whose kind is wanted. With ``array_api`` (the
    default) each function has an array-API twin that arrays of other libraries are handed to
    (see the module docstring); without, the module is numpy's alone."""
    check_dtype(dtype)
    wanted = set(ENTRY_KINDS if kinds is None else kinds)
    with no_gc():
        writer = _Writer(program, dtype, array_api)
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
