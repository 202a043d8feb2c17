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
source reaches it except identifiers the frontend validated, given their Python names by the
module's namer (:mod:`exprgrad.emit.names`), and numbers printed with ``repr``. Statements are
recorded as data (:class:`Assign` of an :class:`Op` tree to a :class:`Var`), one operation each;
single-use temporaries are then folded into their user up to :data:`FUSE_LIMIT` operations, so
CPython's compiler never meets a deeply nested expression; a comment names the ``.exg`` line
each block came from. Tensor nodes are unrolled into scalar statements here, and
the statement count is bounded by :data:`exprgrad.limits.MAX_SCALAR_STATEMENTS`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ExprgradLimitError
from ..ir.derive import derivatives, second_derivatives, vjp
from ..ir.graph import Graph, no_gc
from ..ir.interpret import interpret
from ..ir.node import Node, depends_on, reachable
from ..ir.ops import OPS
from ..ir.program import Function, Program
from ..limits import MAX_SCALAR_PARAMS, MAX_SCALAR_STATEMENTS
from .module import ENTRY_KINDS, ModuleWriter, Unrecorded, Uses
from .names import Scope, ident_part
from .steps import SETTINGS, STATE, STEP_KINDS, step_doc, update
from .verify import verify_module


@dataclass(eq=False)
class Var:
    """A local variable of a generated function (compared by identity, named once)."""

    name: str
    temp: bool = True  # an unnamed temporary: may be folded into its single user


@dataclass(eq=False)
class Op:
    """One operation of the op table applied to elements; printed by the op's ``py`` emitter."""

    op: str
    args: list[Expr]


Elem = Var | float  # an element of a value: a variable or a constant
Expr = Var | float | Op


@dataclass(eq=False)
class Assign:
    target: Var
    value: Expr
    line: int | None


def _consts(op: Op) -> list[float | None]:
    return [a if isinstance(a, float) else None for a in op.args]


_MULTIPLICITY: dict[tuple[str, tuple[float | None, ...]], list[int]] = {}


def multiplicity(op: Op) -> list[int]:
    """How often the ``py`` emitter of ``op`` writes each argument (``x * x`` for ``x ** 2``)."""
    consts = tuple(_consts(op))
    key = (op.op, consts)
    found = _MULTIPLICITY.get(key)
    if found is None:
        marks = [f"\x00{i}\x00" for i in range(len(op.args))]
        emit = OPS[op.op].py
        assert emit is not None, f"{op.op} has no Python emitter"
        text = emit(marks, list(consts), Unrecorded())
        found = _MULTIPLICITY[key] = [text.count(m) for m in marks]
    return found


class Datum(float):
    """A number of a training example known at compile time (a step specialised to the file's
    data): folded like a constant, but never a strong zero, so ``w * x`` with ``x = 0`` is the
    IEEE product the step taking the data as arguments computes (``nan`` for ``w = inf``)."""


class PyAlgebra:
    """Element algebra that records one statement per scalar operation (see ops.Algebra)."""

    def __init__(self, scope: Scope, budget: int) -> None:
        self.scope = scope
        self.stmts: list[Assign] = []
        self.line: int | None = None
        self.mark = 0  # where the current node's statements start
        self.budget = budget

    def scalar(self, op: str, args: Sequence[Elem], attr: Any = None) -> Elem:
        spec = OPS[op]
        if all(isinstance(a, float) for a in args):
            assert spec.ref is not None, f"{op} has no reference implementation"
            folded = float(spec.ref(*args))
            return Datum(folded) if any(isinstance(a, Datum) for a in args) else folded
        simpler = _identity(op, args)
        if simpler is not None:
            return simpler
        target = Var(self.scope.temp())
        self.stmts.append(Assign(target, Op(op, list(args)), self.line))
        if len(self.stmts) > self.budget:
            raise ExprgradLimitError(
                "the scalar backend would write more statements than the limit for one module "
                f"({MAX_SCALAR_STATEMENTS}, exprgrad.limits.MAX_SCALAR_STATEMENTS)",
                hint=NUMPY_HINT)
        return target

    def zero(self) -> Elem:
        return 0.0

    def const(self, value: float) -> Elem:
        return value


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
            if isinstance(b, float) and b == 0.0 and not isinstance(b, Datum):
                return 0.0
    elif op == "div" and isinstance(args[1], float) and args[1] == 1.0:
        return args[0]
    return None


class Printer:
    """Prints expressions; every module, helper and non-finite number goes through ``uses``."""

    def __init__(self, uses: Uses) -> None:
        self.uses = uses

    def expr(self, e: Expr) -> str:
        """``e`` as Python text (recursing at most FUSE_LIMIT operations deep)."""
        if isinstance(e, Var):
            return e.name
        if isinstance(e, float):
            return self.uses.const(e)
        texts = []
        for a in e.args:
            text = self.expr(a)
            texts.append(text if not isinstance(a, Op) or _is_atom(text) else f"({text})")
        emit = OPS[e.op].py
        assert emit is not None, f"{e.op} has no Python emitter"
        return emit(texts, _consts(e), self.uses)

    def elems(self, elems: Sequence[Expr], shape: tuple[int, ...]) -> str:
        """A tensor's elements as a Python list display (nested for a matrix)."""
        texts = [self.expr(e) for e in elems]
        if shape == ():
            return texts[0]
        if len(shape) == 1:
            return "[" + ", ".join(texts) + "]"
        m, n = shape
        return "[" + ", ".join("[" + ", ".join(texts[i * n:(i + 1) * n]) + "]"
                               for i in range(m)) + "]"


def _is_atom(text: str) -> bool:
    """A name, or a call ``name(...)`` whose parenthesis closes at the end: needs no parens."""
    head = 0
    while head < len(text) and (text[head].isalnum() or text[head] in "_."):
        head += 1
    if head == len(text):
        return head > 0
    if head == 0 or text[head] != "(":
        return False
    depth = 0
    for i in range(head, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i == len(text) - 1
    return False


def _unpack_target(names: list[str], shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"
    m, n = shape
    rows = ["(" + ", ".join(names[i * n:(i + 1) * n]) + ("," if n == 1 else "") + ")"
            for i in range(m)]
    return "(" + ", ".join(rows) + ("," if m == 1 else "") + ")"


def _tuple(items: list[str]) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


class ScalarWriter:
    """Writes the functions of one scalar-backend module into a :class:`ModuleWriter`."""

    def __init__(self, program: Program, budget: int, hint: str = "") -> None:
        self.hint = hint
        self.program = program
        self.graph: Graph = program.graph
        self.module = ModuleWriter(program, "python", "math")
        self.printer = Printer(self.module.uses)
        self.budget = budget
        self.statements = 0
        #: the f_vjp functions have a budget of their own: they repeat the forward and gradient
        #: work of f_grad, and a program that compiled without them still compiles
        self.vjp_statements = 0

    def emit(self, kind: str, fn: Function, roots: list[Node], returns: Render, doc: str,
             with_params: bool, summed: Picker | None = None, steps: Sequence[str] = (),
             write: bool = True, write_sum: bool = True) -> None:
        """Emit the function of ``kind`` for ``fn``, computing ``roots``; ``returns`` prints the
        return value from the roots' elements.

        With ``summed`` (which picks the value and the flat gradient out of the roots'
        elements), also emit the ``grad_sum`` function: the same statements in a loop over a
        batch, accumulating the value and the gradient; and for each optimizer of ``steps`` its
        training step (:mod:`exprgrad.emit.steps`): that loop, then the update. ``write`` and
        ``write_sum`` say whether the function itself and ``grad_sum`` are wanted.
        """
        try:
            self._emit(kind, fn, roots, returns, doc, with_params, summed, steps, write,
                       write_sum)
        except ExprgradLimitError as err:
            err.span = err.span or fn.span
            err.hint = self.hint or err.hint
            err.lineno, err.offset = err.span.line, err.span.col
            raise err.with_source(self.program.filename, self.program.source) from None

    def _emit(self, kind: str, fn: Function, roots: list[Node], returns: Render, doc: str,
              with_params: bool, summed: Picker | None, steps: Sequence[str], write: bool,
              write_sum: bool) -> None:
        scope = self.module.namer.scope()
        alg = PyAlgebra(scope, self.budget - (self.vjp_statements if kind == "vjp"
                                              else self.statements))
        env: dict[int, list[Any]] = {}
        params = scope.fresh("params") if with_params else None
        arg_sig = [scope.fresh(a) for a in fn.arg_names]
        unpack: list[str] = []  # the arguments' elements
        for node, pyname, shape in zip(fn.inputs, arg_sig, fn.arg_shapes):
            if shape == ():
                env[node.id] = [Var(pyname, temp=False)]
                continue
            names = [scope.fresh(f"_{ident_part(node.attr[1])}_{i}") for i in range(node.size)]
            env[node.id] = [Var(n, temp=False) for n in names]
            unpack.append(f"{_unpack_target(names, shape)} = {pyname}")
        prologue: list[str] = []  # the parameters' elements
        if params is not None:
            pnames = self._param_elements(scope, env)
            prologue.append(f"{_unpack_target(pnames, (-1,))} = {params}")
        before, after = self._hooks(alg, scope)
        elems = interpret(roots, env, alg, before=before, after=after)
        if write:
            self._write(kind, fn, alg, elems, returns, doc, [params] if params else [],
                        arg_sig, unpack, prologue)
        if summed is not None and params is not None:
            self._summed(fn, alg, scope, summed(elems), params, arg_sig, prologue, unpack,
                         [Var(n, temp=False) for n in pnames], steps, write_sum)

    def _write(self, kind: str, fn: Function, alg: PyAlgebra, elems: list[Any], returns: Render,
               doc: str, params: list[str], arg_sig: list[str], unpack: list[str],
               prologue: list[str]) -> None:
        """Print the function of ``kind`` from its recorded statements."""
        name = self.module.entry(fn.name, kind)
        returned = returns(elems, self.printer)
        live = [e for root in elems for e in root if isinstance(e, Var)]
        body = _fuse(_dce(alg.stmts, live), live)
        lines = [f"def {name}({', '.join(params + arg_sig)}):", f'    """{doc}"""',
                 *(f"    {u}" for u in unpack), *(f"    {p}" for p in prologue),
                 *self._body_lines(body, "    ")]
        lines.append("    return " + returned)
        self.module.add("\n".join(lines))
        if kind == "vjp":
            self.vjp_statements += len(body)
        else:
            self.statements += len(body)

    def _hooks(self, alg: PyAlgebra, scope: Scope) -> tuple[Callable[[Node], None],
                                                            Callable[[Node, list[Any]], list[Any]]]:
        """The interpreter's hooks: each statement records its source line, and the statements
        of a user-named node are named after the user's variable (see :meth:`_rename`)."""
        versions: dict[str, int] = {}

        def before(node: Node) -> None:
            span = self.graph.spans.get(node.id)
            alg.line = span.line if span else None
            alg.mark = len(alg.stmts)

        def after(node: Node, elems: list[Any]) -> list[Any]:
            user = self.graph.names.get(node.id)
            if user is not None and len(alg.stmts) > alg.mark:
                self._rename(alg, scope, elems, ident_part(user), versions, node.size)
            return elems

        return before, after

    def unrolled(self, fn: Function, roots: list[Node], pick: Picker, n: int,
                 optimizer: str, data: list[list[list[float]]] | None = None) -> bool:
        """The training step of ``optimizer`` for batches of exactly ``n`` examples, unrolled:
        the statements of every example written out, the gradient summed in one expression per
        parameter and folded into the update, as a careful hand-written step is. The nodes that
        do not depend on the example are computed once. With ``data`` (per example, per
        argument, its elements), the step is specialised to those examples: it takes no batch,
        and their numbers are constants (:class:`Datum`). Returns False (and writes nothing)
        when it would take more than :data:`UNROLL_STATEMENTS` statements."""
        scope = self.module.namer.scope()
        budget = min(UNROLL_STATEMENTS, self.budget - self.statements)
        alg = PyAlgebra(scope, budget)
        base: dict[int, list[Any]] = {}
        params = scope.fresh("params")
        pnames = self._param_elements(scope, base)
        pvars = [base[self.program.params[t].node.id][i] for t, i in self.program.param_order]
        arg_sig = [scope.fresh(a) for a in fn.arg_names]
        before, after = self._hooks(alg, scope)
        dependent = depends_on(roots, {node.id for node in fn.inputs})
        try:
            interpret([x for x in reachable(roots) if x.id not in dependent], base, alg,
                      before=before, after=after)
            examples: list[list[list[str]]] = []  # per argument, per example: element names
            value: Elem = 0.0
            grads: list[Elem] = []
            for e in range(n):
                env = dict(base)
                for k, (node, arg) in enumerate(zip(fn.inputs, fn.arg_names)):
                    if data is not None:
                        env[node.id] = [Datum(v) for v in data[e][k]]
                        continue
                    names = [scope.fresh(f"_{ident_part(arg)}{e}" + (f"_{i}" if node.shape
                                                                      else ""))
                             for i in range(node.size)]
                    env[node.id] = [Var(name, temp=False) for name in names]
                    if e == 0:
                        examples.append([])
                    examples[k].append(names)
                v, g = pick(interpret(roots, env, alg, before=before, after=after))
                alg.line = None
                value = v if e == 0 else alg.scalar("add", [value, v])
                grads = g if e == 0 else [alg.scalar("add", [a, b]) for a, b in zip(grads, g)]
            names_ = _StepNames(scope)
            new, state = names_.update(alg, optimizer, pvars, grads)
        except ExprgradLimitError:
            return False
        live = [e for v in [[value], new, *state] for e in v if isinstance(e, Var)]
        body, results = _into_return(_fuse(_dce(alg.stmts, live), live, into_unlined=True),
                                     [[value], new, *state])
        self.statements += len(body)
        unpack = [f"    {_unpack_target(pnames, (-1,))} = {params}"]
        if data is not None:
            arg_sig = []
        for arg, shape, per_example in zip(arg_sig, fn.arg_shapes, examples):
            rows = [_unpack_target(names, shape) if shape else names[0] for names in per_example]
            unpack.append(f"    {_tuple(rows)} = {arg}")
        if data is None:
            name = self.module.entry(fn.name, STEP_KINDS[optimizer] + "_unrolled")
            self.module.unrolled[fn.name] = n
            doc = f"{step_doc(fn.name, optimizer)} For batches of exactly {n} examples."
        else:
            name = self.module.entry(fn.name, STEP_KINDS[optimizer] + "_data")
            doc = (f"One {optimizer} step on {fn.name} summed over the train statement's {n} "
                   f"examples, their numbers written in: {step_doc(fn.name, optimizer, False)}")
        returned = ", ".join([self.printer.expr(results[0][0]),
                              *(self.printer.elems(v, (len(v),)) for v in results[1:])])
        self.module.add("\n".join([
            f"def {name}({', '.join(names_.signature(optimizer, params, arg_sig))}):",
            f'    """{doc}"""',
            *unpack, *names_.unpack(optimizer, len(pvars)),
            *self._body_lines(body, "    "), f"    return {returned}"]))
        return True

    def _param_elements(self, scope: Scope, env: dict[int, list[Any]]) -> list[str]:
        """A local per parameter element, named after it (``_w_0``, ``_m_1_2``)."""
        program = self.program
        for pt in program.params.values():
            env[pt.node.id] = [0.0] * pt.node.size
        names = []
        for tensor, index in program.param_order:
            shape = program.params[tensor].node.shape
            suffix = (f"_{index // shape[1]}_{index % shape[1]}" if len(shape) == 2 else
                      f"_{index}" if shape else "")
            name = scope.fresh(f"_{ident_part(tensor)}{suffix}")
            env[program.params[tensor].node.id][index] = Var(name, temp=False)
            names.append(name)
        return names

    def _summed(self, fn: Function, alg: PyAlgebra, scope: Scope,
                picked: tuple[Elem, list[Elem]], params: str, arg_sig: list[str],
                prologue: list[str], unpack: list[str], pvars: list[Var],
                steps: Sequence[str], write_sum: bool) -> None:
        """``grad_sum`` (with ``write_sum``): the body of ``grad`` in a loop over the examples,
        accumulating; then the training steps of ``steps``: the same loop, then the update."""
        value, flat = picked
        line_of = {id(s.target): s.line for s in alg.stmts}
        stmts = list(alg.stmts)
        accs = [Var(scope.temp("sum"), temp=False)] + [Var(scope.temp("gsum"), temp=False)
                                                        for _ in flat]
        for acc, elem in zip(accs, [value, *flat]):
            if isinstance(elem, float):
                if elem != 0.0:  # a constant: the same for every example
                    stmts.append(Assign(acc, Op("add", [acc, elem]), None))
            else:
                stmts.append(Assign(acc, Op("add", [acc, elem]), line_of.get(id(elem))))
        body = _fuse(_dce(stmts, accs), accs)
        self.statements += len(body)
        loop = ", ".join(arg_sig)
        target = f"({loop},)" if len(arg_sig) == 1 else loop
        looped = [f"    {' = '.join(a.name for a in accs)} = 0.0",
                  f"    for {target} in zip({loop}, strict=True):",
                  *(f"        {u}" for u in unpack), *self._body_lines(body, "        ")]
        if write_sum:
            name = self.module.entry(fn.name, "grad_sum")
            lines = [f"def {name}({', '.join([params, *arg_sig])}):",
                     f'    """(sum of {fn.name}, gradient of that sum with respect to the '
                     f'parameters) over a batch: each argument holds one value per example."""',
                     *(f"    {p}" for p in prologue), *looped,
                     f"    return {accs[0].name}, [{', '.join(a.name for a in accs[1:])}]"]
            self.module.add("\n".join(lines))
        names = _StepNames(scope)
        for optimizer in steps:
            tail = PyAlgebra(scope, self.budget - self.statements)
            new, state = names.update(tail, optimizer, pvars, accs[1:])
            live = [e for v in [new, *state] for e in v if isinstance(e, Var)]
            after, results = _into_return(_fuse(_dce(tail.stmts, live), live), [new, *state])
            self.statements += len(after)
            name = self.module.entry(fn.name, STEP_KINDS[optimizer])
            returned = ", ".join([accs[0].name, *(self.printer.elems(v, (len(v),))
                                                  for v in results)])
            self.module.add("\n".join([
                f"def {name}({', '.join(names.signature(optimizer, params, arg_sig))}):",
                f'    """{step_doc(fn.name, optimizer)}"""',
                *(f"    {p}" for p in prologue), *names.unpack(optimizer, len(pvars)),
                *looped, *self._body_lines(after, "    "), f"    return {returned}"]))

    @staticmethod
    def _rename(alg: PyAlgebra, scope: Scope, elems: list[Any], base: str,
                versions: dict[str, int], size: int) -> None:
        """Name the statements that produced a user-named node's elements after the user's
        variable (``_z``, ``_z2`` for a rebinding, ``_h_0`` for an element)."""
        created = {id(s.target) for s in alg.stmts[alg.mark:]}
        version = versions.get(base, 0) + 1
        versions[base] = version
        stem = f"_{base}" + (str(version) if version > 1 else "")
        for i, e in enumerate(elems):
            if isinstance(e, Var) and id(e) in created and e.temp:
                e.name = scope.fresh(stem + (f"_{i}" if size > 1 else ""))
                e.temp = False

    def _body_lines(self, body: list[Assign], indent: str) -> list[str]:
        """Statements as lines, with a ``# line N`` comment where the source line changes."""
        lines = []
        last_line: int | None = -1
        for stmt in body:
            if stmt.line != last_line and stmt.line is not None:
                lines.append(f"{indent}# line {stmt.line}")
            last_line = stmt.line
            lines.append(f"{indent}{stmt.target.name} = {self.printer.expr(stmt.value)}")
        return lines


class _StepNames:
    """The extra arguments of one function's training steps (optimizer state, settings,
    ``scale``) and their element locals, named once in the function's scope."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.args: dict[str, str] = {}
        self.elems: dict[str, list[Var]] = {}

    def arg(self, name: str) -> str:
        if name not in self.args:
            self.args[name] = self.scope.fresh(name)
        return self.args[name]

    def signature(self, optimizer: str, params: str, batch: list[str]) -> list[str]:
        return [params, *(self.arg(n) for n in STATE[optimizer]), *batch,
                *(self.arg(n) for n in SETTINGS[optimizer]), f"{self.arg('scale')}=1.0"]

    def vector(self, name: str, size: int) -> list[Var]:
        if name not in self.elems:
            self.elems[name] = [Var(self.scope.fresh(f"_{name}_{i}"), temp=False)
                                for i in range(size)]
        return self.elems[name]

    def unpack(self, optimizer: str, size: int) -> list[str]:
        """The lines unpacking the state vectors into their element locals."""
        return [f"    {_unpack_target([v.name for v in self.vector(n, size)], (-1,))} = "
                f"{self.arg(n)}" for n in STATE[optimizer] if n != "t"]

    def update(self, alg: PyAlgebra, optimizer: str, params: Sequence[Elem],
               grads: Sequence[Elem]) -> tuple[list[Elem], list[list[Elem]]]:
        state: dict[str, Any] = {n: (Var(self.arg(n), temp=False) if n == "t" else
                                     self.vector(n, len(params))) for n in STATE[optimizer]}
        settings = {n: Var(self.arg(n), temp=False) for n in SETTINGS[optimizer]}
        return update(alg, optimizer, params, grads, state, settings,  # type: ignore[no-any-return]
                      Var(self.arg("scale"), temp=False))


#: the statements an optimizer's update writes per parameter (for the estimate of a module's
#: statements; an unrolled step is left out when it would not fit, so it needs none)
UPDATE_STATEMENTS = {"sgd": 2, "momentum": 5, "adam": 14}

#: the most statements an unrolled training step may hold (beyond it, steps loop over the batch)
UNROLL_STATEMENTS = 20_000

#: the most operations one fused statement may hold (keeps nesting shallow for CPython)
FUSE_LIMIT = 12


def _vars_of(e: Expr) -> Iterator[tuple[Var, int]]:
    """The variables an expression reads, each with how often it is printed."""
    stack: list[tuple[Expr, int]] = [(e, 1)]
    while stack:
        x, times = stack.pop()
        if isinstance(x, Var):
            yield x, times
        elif isinstance(x, Op):
            stack.extend((a, times * k) for a, k in zip(x.args, multiplicity(x)))


def _fuse(stmts: list[Assign], live: Sequence[Var], into_unlined: bool = False
          ) -> list[Assign]:
    """Fold each temporary that is printed exactly once into its user on the same source line,
    up to FUSE_LIMIT operations per statement: fewer loads and stores, the same arithmetic in
    the same order (the printer parenthesizes every folded operation). Decided on the
    statements' structure by use counts, never on printed text. A pure function: the given
    statements are not changed (the ``grad_sum`` function fuses the same statements again)."""
    uses: dict[int, int] = {}
    for stmt in stmts:
        for var, times in _vars_of(stmt.value):
            uses[id(var)] = uses.get(id(var), 0) + times
    for var in live:
        uses[id(var)] = uses.get(id(var), 0) + 2  # never fold into the return
    where = {id(stmt.target): i for i, stmt in enumerate(stmts)}
    out = list(stmts)  # statements that fold others in are replaced; the input is not changed
    ops = [_op_count(stmt.value) for stmt in stmts]
    gone = [False] * len(stmts)
    for i, stmt in enumerate(stmts):
        if not isinstance(stmt.value, Op):
            continue
        args = list(stmt.value.args)
        changed = False
        for k, arg in enumerate(args):
            if not isinstance(arg, Var) or not arg.temp:
                continue
            j = where.get(id(arg))
            if j is None or j >= i or gone[j] or uses.get(id(arg)) != 1:
                continue
            if stmts[j].line != stmt.line and not (into_unlined and stmt.line is None):
                continue
            if ops[i] + ops[j] > FUSE_LIMIT:
                continue
            args[k] = out[j].value
            ops[i] += ops[j]
            gone[j] = True
            changed = True
        if changed:
            out[i] = Assign(stmt.target, Op(stmt.value.op, args), stmt.line)
    return [stmt for stmt, dead in zip(out, gone) if not dead]


def _into_return(stmts: list[Assign], results: Sequence[Sequence[Elem]]
                 ) -> tuple[list[Assign], list[list[Expr]]]:
    """Print the temporaries that only the return reads in the return itself (a training step
    returns ``[w - k * g, ...]``, not a name per new parameter). Pure, like :func:`_fuse`."""
    read: dict[int, int] = {}
    for stmt in stmts:
        for var, times in _vars_of(stmt.value):
            read[id(var)] = read.get(id(var), 0) + times
    returned: dict[int, int] = {}
    for e in (e for row in results for e in row if isinstance(e, Var)):
        returned[id(e)] = returned.get(id(e), 0) + 1
    value = {id(stmt.target): stmt.value for stmt in stmts if stmt.target.temp
             and returned.get(id(stmt.target)) == 1 and id(stmt.target) not in read}
    kept = [stmt for stmt in stmts if id(stmt.target) not in value]
    return kept, [[value.get(id(e), e) for e in row] for row in results]


def _op_count(e: Expr) -> int:
    """The operations in an expression tree."""
    count, stack = 0, [e]
    while stack:
        x = stack.pop()
        if isinstance(x, Op):
            count += 1
            stack.extend(x.args)
    return count


def _dce(stmts: list[Assign], live: Sequence[Var]) -> list[Assign]:
    """Drop statements whose target is never read (element-level dead-code elimination)."""
    needed = {id(v) for v in live}
    kept = []
    for stmt in reversed(stmts):
        if id(stmt.target) in needed:
            kept.append(stmt)
            needed.update(id(v) for v, _ in _vars_of(stmt.value))
    kept.reverse()
    return kept


#: prints a function's return value from its roots' elements
Render = Callable[[list[list[Elem]], Printer], str]
#: picks (value element, flat gradient elements) out of a loss's roots
Picker = Callable[[list[list[Elem]]], tuple[Elem, list[Elem]]]


#: the hint of the statement and parameter limits (callers that offer no numpy backend give
#: their own)
NUMPY_HINT = ("use the numpy backend (--backend numpy), which writes one array operation per "
              "tensor op, or make the network smaller")


def generate(program: Program, *, hessians: bool = False,
             budget: int = MAX_SCALAR_STATEMENTS, verify: bool = True,
             kinds: Collection[str] | None = None, hint: str = NUMPY_HINT,
             steps: Sequence[str] = ("sgd",), unroll: int = 0,
             data: tuple[str, list[list[list[float]]]] | None = None) -> str:
    """The scalar-backend module for a program (see the module docstring).

    ``kinds`` (default: all) names the generated functions wanted for each def (``value``,
    ``grad``, ``grad_sum``, ``vjp``, ``hess``, ``step``...): the others are not derived nor
    written. Every loss (a scalar function of parameters and arguments) gets the training step
    of each optimizer in ``steps`` whose kind is wanted (``f_step``, ``f_step_momentum``,
    ``f_step_adam``: see :mod:`exprgrad.emit.steps`); with ``unroll`` = n > 0, also their
    variants for batches of exactly n examples, unrolled (``f_step_unrolled``...; see
    :meth:`ScalarWriter.unrolled`), where they stay small enough; with ``data`` = (the train
    statement's loss, its examples: per example, per argument, the elements), also their
    variants specialised to those examples (``f_step_data``...). A program over the limits is
    refused before any statement is written, with ``hint``. With ``verify`` (the default) the
    text is checked against the allowlist of :mod:`exprgrad.emit.verify` before it is
    returned.
    """
    unknown = set(steps) - set(STEP_KINDS)
    assert not unknown, f"no training step for {sorted(unknown)}"
    with no_gc():
        return _generate(program, hessians, budget, verify,
                         set(ENTRY_KINDS if kinds is None else kinds), hint, steps, unroll,
                         data)


@dataclass
class _Job:
    """One generated function to write: ScalarWriter.emit's arguments."""

    kind: str
    fn: Function
    roots: list[Node]
    returns: Render
    doc: str
    with_params: bool
    summed: Picker | None = None
    write: bool = True  # False: only its grad_sum or steps are wanted
    write_sum: bool = False  # grad_sum is wanted
    steps: Sequence[str] = ()  # the optimizers whose training steps are wanted
    unrolled: Sequence[str] = ()  # ... and whose unrolled steps are
    data: Sequence[str] = ()  # ... and whose steps specialised to the train statement's data are


def _generate(program: Program, hessians: bool, budget: int, verify: bool, kinds: set[str],
              hint: str, steps: Sequence[str], unroll: int,
              data: tuple[str, list[list[list[float]]]] | None) -> str:
    if len(program.param_order) > MAX_SCALAR_PARAMS:
        raise ExprgradLimitError(
            f"the scalar backend writes out every parameter element; this program has "
            f"{len(program.param_order)}, the limit is {MAX_SCALAR_PARAMS} "
            "(exprgrad.limits.MAX_SCALAR_PARAMS)", filename=program.filename, hint=hint)
    jobs = [job for fn in program.functions.values()
            for job in _jobs(program, fn, kinds, hessians, steps)]
    _check_estimate(program, jobs, budget, hint)
    writer = ScalarWriter(program, budget, hint)
    for job in jobs:
        writer.emit(job.kind, job.fn, job.roots, job.returns, job.doc, job.with_params,
                    job.summed, job.steps, job.write, job.write_sum)
        if job.summed is None:
            continue
        for optimizer in job.unrolled if unroll else ():
            writer.unrolled(job.fn, job.roots, job.summed, unroll, optimizer)
        if data is not None and data[0] == job.fn.name:
            for optimizer in job.data:
                writer.unrolled(job.fn, job.roots, job.summed, len(data[1]), optimizer, data[1])
    code = writer.module.render(_DOCSTRING)
    if verify:
        verify_module(code)
    return code


def _jobs(program: Program, fn: Function, kinds: set[str], hessians: bool,
          steps: Sequence[str]) -> list[_Job]:
    """The generated functions of ``kinds`` for one def, in the order they are written."""
    fname = fn.name
    args_doc = ", ".join(a + (f"[{','.join(map(str, s))}]" if s else "")
                         for a, s in zip(fn.arg_names, fn.arg_shapes))
    outs = fn.outputs
    n_out = len(outs)
    values = _values_render([o.shape for o in outs])
    jobs = []
    if "value" in kinds:
        jobs.append(_Job("value", fn, outs, values,
                         f"{fname}({args_doc}) from line {fn.span.line}.", fn.uses_params))
    if kinds & {"grad", "grad_sum", "hess", *STEP_KINDS.values(),
                *(k + suffix for k in STEP_KINDS.values() for suffix in ("_unrolled", "_data"))}:
        derived = derivatives(program, fn)
        summed = None
        looped = [o for o in steps if STEP_KINDS[o] in kinds]
        unrolled = [o for o in steps if STEP_KINDS[o] + "_unrolled" in kinds]
        with_data = [o for o in steps if STEP_KINDS[o] + "_data" in kinds]
        if fn.uses_params and n_out == 1 and outs[0].shape == () and fn.inputs and (
                "grad_sum" in kinds or looped or unrolled or with_data):
            summed = _grad_picker(program, len(derived.wrt))
        if "grad" in kinds or summed is not None:
            jobs.append(_Job("grad", fn, [*outs, *derived.flat],
                             _grad_render(program, fn, n_out, len(derived.wrt), values),
                             f"(value, gradient with respect to "
                             f"{'the parameters' if fn.uses_params else 'each argument'}) of "
                             f"{fname}.", fn.uses_params, summed, "grad" in kinds,
                             summed is not None and "grad_sum" in kinds,
                             looped if summed else (), unrolled if summed else (),
                             with_data if summed else ()))
    if "vjp" in kinds:
        v = vjp(program, fn)
        douts = ["dout"] if n_out == 1 else [f"dout{k + 1}" for k in range(n_out)]
        with_douts = replace(fn, inputs=[*fn.inputs, *v.douts],
                             arg_names=[*fn.arg_names, *douts],
                             arg_shapes=[*fn.arg_shapes, *(o.shape for o in outs)])
        jobs.append(_Job("vjp", with_douts, [*outs, *v.cotangents],
                         _vjp_render(program, fn, n_out, values),
                         f"(value, {'parameter cotangent, ' if fn.uses_params else ''}cotangent "
                         f"of each argument) of {fname} for the output cotangent "
                         f"{', '.join(douts)}.", fn.uses_params))
    if hessians and "hess" in kinds and not fn.uses_params and n_out == 1 and \
            outs[0].shape == () and all(s == () for s in fn.arg_shapes):
        n = len(fn.inputs)
        second = second_derivatives(program, fn)
        roots = [outs[0], *derived.grads[0], *[x for row in second for x in row]]
        jobs.append(_Job("hess", fn, roots, _hess_render(n),
                         f"(value, gradient, Hessian) of {fname}.", False))
    return jobs


#: ops that only move elements: the scalar backend writes no statement for them
_MOVES = frozenset({"custom", "transpose", "stack", "index", "scatter", "broadcast"})


def estimate_statements(roots: Sequence[Node]) -> int:
    """About how many scalar statements computing ``roots`` takes, read from the IR before any
    is written (a slight underestimate): one per element of each operation, or per element of
    its largest argument for a reduction or a product (a multiply-add each); none for inputs,
    parameters, constants and ops that only move elements."""
    total = 0
    for node in reachable(roots):
        spec = OPS[node.op]
        if not node.args or node.op in _MOVES:
            continue
        total += node.size if spec.elementwise else max(node.size, *(a.size for a in node.args))
    return total


def _check_estimate(program: Program, jobs: list[_Job], budget: int, hint: str) -> None:
    """Refuse at once a module whose statements (estimated) exceed the budget: the f_vjp
    functions have a budget of their own, every other function shares one."""
    for vjps in (False, True):
        chosen = [job for job in jobs if (job.kind == "vjp") == vjps]
        estimate = sum(estimate_statements(job.roots) * (job.write + job.write_sum
                                                         + len(job.steps))
                       + sum(UPDATE_STATEMENTS[o] for o in job.steps) * len(program.param_order)
                       for job in chosen)
        if estimate > budget:
            what = "f_vjp functions" if vjps else "functions"
            raise ExprgradLimitError(
                f"the scalar backend would write about {estimate} statements for the "
                f"{what} of this module; the limit is {budget} "
                "(exprgrad.limits.MAX_SCALAR_STATEMENTS)",
                chosen[0].fn.span, hint=hint).with_source(program.filename, program.source)


_DOCSTRING = """Straight-line forward and gradient code compiled from {label} by exprgrad.

Each def f has f(...) (its value) and f_grad(...) ((value, gradient)); ENTRY_POINTS names them
(a name that would shadow a Python builtin is changed); see exprgrad's docs/generated.md for the
exact calling convention."""


def _values_render(shapes: list[tuple[int, ...]]) -> Render:
    def render(v: list[list[Elem]], p: Printer) -> str:
        shown = [p.elems(v[i], s) for i, s in enumerate(shapes)]
        return shown[0] if len(shown) == 1 else "(" + ", ".join(shown) + ")"

    return render


def _hess_render(n: int) -> Render:
    def render(v: list[list[Elem]], p: Printer) -> str:
        g = _tuple([p.elems(v[1 + i], ()) for i in range(n)])
        rows = [_tuple([p.elems(v[1 + n + i * n + j], ()) for j in range(n)]) for i in range(n)]
        return f"{p.elems(v[0], ())}, {g}, {_tuple(rows)}"

    return render


def _grad_picker(program: Program, n_wrt: int) -> Picker:
    """For a scalar loss of parameters: (value element, flat gradient elements)."""
    position = {t: i for i, t in enumerate(program.params)}

    def pick(v: list[list[Elem]]) -> tuple[Elem, list[Elem]]:
        row = v[1:1 + n_wrt]
        return v[0][0], [row[position[t]][i] for t, i in program.param_order]

    return pick


def _grad_render(program: Program, fn: Function, n_out: int, n_wrt: int, values: Render
                 ) -> Render:
    """How f_grad returns: (value, grads); see docs/generated.md."""
    position = {t: i for i, t in enumerate(program.params)}

    def render(v: list[list[Elem]], p: Printer) -> str:
        parts = []
        for k in range(n_out):
            row = v[n_out + k * n_wrt: n_out + (k + 1) * n_wrt]
            if fn.uses_params:
                flat = [row[position[t]][i] for t, i in program.param_order]
                parts.append(p.elems(flat, (len(flat),)))
            else:
                parts.append(_tuple([p.elems(r, s) for r, s in zip(row, fn.arg_shapes)]))
        grads = parts[0] if n_out == 1 else _tuple(parts)
        return f"{values(v[:n_out], p)}, {grads}"

    return render


def _vjp_render(program: Program, fn: Function, n_out: int, values: Render) -> Render:
    """How f_vjp returns: (value, [parameter cotangent,] argument cotangents); see
    docs/generated.md."""
    n_tensors = len(program.params) if fn.uses_params else 0
    position = {t: i for i, t in enumerate(program.params)}

    def render(v: list[list[Elem]], p: Printer) -> str:
        cotangents = v[n_out:]
        args = _tuple([p.elems(r, s) for r, s in zip(cotangents[n_tensors:], fn.arg_shapes)])
        value = values(v[:n_out], p)
        if not fn.uses_params:
            return f"{value}, {args}"
        row = cotangents[:n_tensors]
        flat = [row[position[t]][i] for t, i in program.param_order]
        return f"{value}, {p.elems(flat, (len(flat),))}, {args}"

    return render

