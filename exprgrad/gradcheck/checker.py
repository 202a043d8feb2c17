"""IR to sympy, and the checks that make sympy the independent judge of every derivative.

Contract:
- :func:`to_sympy` converts IR nodes to sympy expressions from the IR objects themselves (never by
  parsing text), iteratively, each shared node converted once; tensors become flat lists of
  elements (row-major).
- :func:`check_function` compares every partial derivative exprgrad produces for one function with
  ``sympy.diff`` of the forward expression (symbolically when ``sympy.simplify`` settles it within
  the time budget, else numerically at random points in 30-digit precision), and the generated
  Python with central differences; given a float32 numpy module, also that module's gradient
  with the same (float64) central differences, at :data:`FLOAT32_TOL`. :func:`check_rules`
  verifies user-written ``grad`` rules
  against sympy's derivative of the body. :func:`check_hessian` compares ``f_hess`` with
  ``sympy.hessian``. Each returns :class:`Line` records; nothing here raises on a mismatch.
"""

from __future__ import annotations

import functools
import math
import random
import signal
import struct
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sympy

from ..emit.load import entry_point
from ..errors import Span
from ..ir.derive import derivatives, second_derivatives
from ..ir.interpret import interpret
from ..ir.node import Node
from ..ir.ops import OPS
from ..ir.program import Function, Program
from ..lower.lowering import flatten_values

#: above this many partials per function, the sympy comparisons use a random sample
SYMPY_SAMPLE = 64
#: seconds of sympy work for a whole check run, by default (`exprgrad check --budget`)
DEFAULT_BUDGET = 60.0


#: differences with more operations than this are compared numerically without trying simplify
SYMBOLIC_OPS = 400

#: finite differences: the largest error ``|a - fd| / max(1, |a|, |fd|)`` accepted for the float64
#: generated gradient, and for a float32 module's (see docs/numerics.md)
FLOAT64_TOL = 1e-4
FLOAT32_TOL = 1e-3


class SymAlgebra:
    """Element algebra over sympy expressions (see ops.Algebra)."""

    def scalar(self, op: str, args: Sequence[Any], attr: Any = None) -> Any:
        sym = OPS[op].sym
        assert sym is not None, f"{op} has no sympy counterpart"
        return sym(*args)

    def zero(self) -> Any:
        return sympy.Integer(0)

    def const(self, value: float) -> Any:
        return sympy.Integer(int(value)) if value.is_integer() else sympy.Float(value, 30)


def to_sympy(roots: Sequence[Node], leaves: dict[int, list[Any]]) -> list[list[Any]]:
    """Sympy elements of each root; ``leaves`` gives the symbols of inputs, params and holes."""
    return interpret(roots, dict(leaves), SymAlgebra())


def element_symbols(base: str, shape: tuple[int, ...]) -> list[Any]:
    """One symbol per element, named as the user would write it (``x``, ``x[0]``, ``m[1,2]``):
    distinct for distinct elements, unlike ``x_0``, which a user may name an argument."""
    if shape == ():
        return [sympy.Symbol(base, real=True)]
    if len(shape) == 1:
        return [sympy.Symbol(f"{base}[{i}]", real=True) for i in range(shape[0])]
    return [sympy.Symbol(f"{base}[{i},{j}]", real=True) for i in range(shape[0])
            for j in range(shape[1])]


@dataclass
class Line:
    function: str
    partial: str
    status: str  # "ok" or "mismatch" or "skipped"
    method: str  # "symbolic", "numeric", "finite-diff", "float32", "rule", "hessian"
    detail: str = ""
    span: Span | None = None

    def text(self) -> str:
        mark = {"ok": "ok      ", "mismatch": "MISMATCH", "skipped": "skipped "}[self.status]
        extra = f"  {self.detail}" if self.detail else ""
        return f"{mark} {self.function:<12} d/d{self.partial:<20} {self.method}{extra}"


@dataclass
class Report:
    lines: list[Line] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:  # the dataclass's would print every line
        bad = sum(1 for x in self.lines if x.status == "mismatch")
        return (f"Report({'ok' if self.ok else 'NOT ok'}: {len(self.lines)} comparisons, {bad} "
                f"mismatched, {len(self.unchecked)} not checked)")

    @property
    def ok(self) -> bool:
        """No mismatch, and every partial derivative checked by at least one method."""
        return all(line.status != "mismatch" for line in self.lines) and not self.unchecked

    @property
    def unchecked(self) -> list[str]:
        """The partial derivatives (and rules, and Hessian entries) no method could check."""
        checked: dict[tuple[str, str, str], bool] = {}
        for line in self.lines:
            family = line.method.split(" ")[0]
            family = ("gradient" if family in ("symbolic", "numeric", "finite-diff", "sympy")
                      else family)
            key = (line.function, line.partial, family)
            checked[key] = checked.get(key, False) or line.status != "skipped"
        return [f"{f} d/d{p}" + ("" if family == "gradient" else f" ({family})")
                for (f, p, family), done in checked.items() if not done]


class _Timeout(BaseException):
    pass


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt pure-Python work (sympy) after ``seconds``; no limit outside the main thread."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Timeout()

    outer, _ = signal.getitimer(signal.ITIMER_REAL)  # a limit around this one keeps running
    start = time.monotonic()
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer) if outer else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer:
            signal.setitimer(signal.ITIMER_REAL,
                             max(outer - (time.monotonic() - start), 1e-6))


@dataclass
class Budget:
    """The seconds of sympy work left for a whole ``check`` run (conversion, derivatives,
    simplification and numeric comparison); one comparison's simplification takes at most
    ``per_partial`` of it. Finite differences are cheap and always run."""

    total: float
    per_partial: float = 2.0
    end: float = 0.0

    def __post_init__(self) -> None:
        self.end = time.monotonic() + self.total

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def spent(self) -> str:
        return f"not checked: the time budget ({self.total:g} s, --budget) was spent"


T = TypeVar("T")


def within(budget: Budget, work: Callable[[], T]) -> T | None:
    """``work()`` under what is left of the budget; None when the budget ran out."""
    left = budget.left()
    if left <= 0:
        return None
    try:
        with _time_limit(left):
            return work()
    except (_Timeout, RecursionError):
        return None


def symbolically_equal(a: Any, b: Any, budget: float) -> bool | None:
    """True if sympy proves a == b within the budget, None if it could not decide in time."""
    try:
        with _time_limit(budget):
            diff = a - b
            if diff == 0:
                return True
            if not _small(diff, SYMBOLIC_OPS):
                return None  # too large to simplify usefully: decide numerically
            if sympy.simplify(diff) == 0:
                return True
            return None
    except (_Timeout, RecursionError):
        return None


def _mp_number(e: Any) -> Any:
    import mpmath

    if e.is_Integer:
        return mpmath.mpf(int(e))
    if e.is_Rational:
        return mpmath.mpf(int(e.p)) / int(e.q)
    if e.is_Float:
        return mpmath.mpf(e._mpf_)
    if e is sympy.pi:
        return mpmath.pi
    if e is sympy.E:
        return mpmath.e
    if e is sympy.S.Half:
        return mpmath.mpf(0.5)
    return mpmath.mpmathify(complex(e.evalf(40)))


class MissingEvaluation(AssertionError):
    """A sympy function with no numeric evaluation: an op lacks its ``mp`` (a bug in exprgrad,
    never a point outside a domain)."""


def _dirac_delta(x: Any, k: Any = 0) -> Any:
    """sympy's DiracDelta (derivatives of step and sign), defined away from 0 only."""
    if x != 0:
        return 0
    raise ValueError("DiracDelta at 0")


@functools.cache
def _mp_functions() -> dict[Any, Callable[..., Any]]:
    """sympy function -> mpmath function: each op's ``mp`` under the head of its ``sym``, and
    the functions sympy's own derivatives introduce."""
    symbols = sympy.symbols("a b c", real=True)
    table: dict[Any, Callable[..., Any]] = {sympy.DiracDelta: _dirac_delta}
    for spec in OPS.values():
        if spec.mp is not None and spec.sym is not None and spec.arity:
            table[spec.sym(*symbols[: spec.arity]).func] = spec.mp
    return table


def _mp_apply(e: Any, args: list[Any]) -> Any:
    import mpmath

    if e.is_Add:
        return mpmath.fsum(args)
    if e.is_Mul:
        out = args[0]
        for a in args[1:]:
            out = out * a
        return out
    if e.is_Pow:
        base, expo = args
        if base == 0 and mpmath.re(expo) < 0:
            raise ZeroDivisionError
        return mpmath.power(base, expo)
    if e.is_Relational:  # (comparisons and where's conditions, compared on real values)
        return _RELATIONS[e.rel_op](mpmath.re(args[0]), mpmath.re(args[1]))
    if isinstance(e, sympy.functions.elementary.piecewise.ExprCondPair):
        return tuple(args)
    if isinstance(e, sympy.Piecewise):  # the value of the first pair whose condition holds
        return next(value for value, holds in args if holds)
    fn = _mp_functions().get(e.func)
    if fn is None:
        raise MissingEvaluation(f"no numeric evaluation for {e.func}: an op of exprgrad's table "
                                "lacks its 'mp' counterpart")
    return fn(*args)


_NOT_FINITE = (sympy.zoo, sympy.oo, -sympy.oo, sympy.nan)
_RELATIONS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: bool(a < b), "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b), ">=": lambda a, b: bool(a >= b),
    "==": lambda a, b: bool(a == b), "!=": lambda a, b: bool(a != b)}


def mp_evaluate(expr: Any, values: dict[Any, Any]) -> Any:
    """Evaluate a sympy expression with mpmath at the current precision, iteratively, each shared
    subexpression once (no printing, no recursion)."""
    cache: dict[Any, Any] = {}
    stack: list[tuple[Any, bool]] = [(expr, False)]
    while stack:
        e, done = stack.pop()
        if e in cache:
            continue
        if e.is_Symbol:
            cache[e] = values[e]
        elif e in (sympy.true, sympy.false):  # a Piecewise's last condition
            cache[e] = bool(e)
        elif e in _NOT_FINITE:  # 1/0 in a rule: no finite value here (the point is skipped)
            raise ValueError(f"{e} in the expression")
        elif e.is_Number or e.is_NumberSymbol or (e.is_Atom and e.is_number):  # 1, pi, I
            cache[e] = _mp_number(e)
        elif not done:
            stack.append((e, True))
            stack.extend((a, False) for a in e.args if a not in cache)
        else:
            cache[e] = _mp_apply(e, [cache[a] for a in e.args])
    return cache[expr]


def _value(expr: Any, values: dict[Any, Any]) -> complex | None:
    import mpmath

    try:
        with mpmath.workdps(30):
            value = complex(mp_evaluate(expr, values))
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    if not (math.isfinite(value.real) and math.isfinite(value.imag)) or abs(value.imag) > 1e-25:
        return None
    return value


def _small(expr: Any, limit: int) -> bool:
    for count, _ in enumerate(sympy.preorder_traversal(expr)):
        if count > limit:
            return False
    return True


def numerically_equal(a: Any, b: Any, symbols: Sequence[Any], rng: random.Random,
                      points: int = 4) -> tuple[bool | None, str]:
    """Compare at random points (30 digits); skip points outside either expression's domain."""
    import mpmath

    tried = 0
    checked = 0
    while checked < points and tried < points * 8:
        tried += 1
        scale = 2.0 if tried <= points * 4 else 0.5
        point = [mpmath.mpf(rng.uniform(-scale, scale) if tried % 2 else rng.uniform(0.1, scale))
                 for _ in symbols]
        values = dict(zip(symbols, point))
        va, vb = _value(a, values), _value(b, values)
        if va is None or vb is None:
            continue
        checked += 1
        if abs(va - vb) > 1e-12 * max(1.0, abs(va), abs(vb)):
            at = ", ".join(f"{s}={float(v):.6g}" for s, v in zip(symbols, point))
            return False, f"at {at}: exprgrad {va.real:.12g}, sympy {vb.real:.12g}"
    if checked == 0:  # nothing was compared: never reported as agreement
        return None, "not checked: no sample point where both sides are finite and real"
    return True, ""


def _status(equal: bool | None) -> str:
    return "ok" if equal else ("skipped" if equal is None else "mismatch")


def _variables(program: Program, fn: Function) -> tuple[list[Node], dict[int, list[Any]],
                                                        list[tuple[str, Any]]]:
    """The nodes differentiated with respect to, the leaf symbols, (label, symbol) per partial."""
    leaves: dict[int, list[Any]] = {}
    for node, name, shape in zip(fn.inputs, fn.arg_names, fn.arg_shapes):
        leaves[node.id] = element_symbols(name, shape)
    for tensor in program.params.values():
        leaves[tensor.node.id] = [sympy.Symbol(n, real=True) for n in tensor.element_names]
    if fn.uses_params:
        wrt = [t.node for t in program.params.values()]
        partials = [(program.params[t].element_names[i], leaves[program.params[t].node.id][i])
                    for t, i in program.param_order]
    else:
        wrt = list(fn.inputs)
        partials = []
        for node, name, shape in zip(fn.inputs, fn.arg_names, fn.arg_shapes):
            syms = leaves[node.id]
            labels = [name] if shape == () else [f"{name}[{i}]" for i in range(len(syms))]
            partials.extend(zip(labels, syms))
    return wrt, leaves, partials


def check_function(program: Program, module: types.ModuleType, fname: str, *,
                   budget: Budget | None = None, seed: int = 0,
                   float32: types.ModuleType | None = None) -> Report:
    """Every partial of one function: sympy (symbolic or numeric, within the budget) and
    central differences; with ``float32`` (a float32 numpy module), its gradient too."""
    budget = budget or Budget(DEFAULT_BUDGET)
    fn = program.functions[fname]
    report = Report()
    rng = random.Random(seed)
    wrt, leaves, partials = _variables(program, fn)
    derived = derivatives(program, fn)
    assert [w.id for w in derived.wrt] == [w.id for w in wrt], "check and derive disagree on wrt"
    all_symbols = [s for syms in leaves.values() for s in syms]
    sample = list(range(len(partials)))
    sampled = len(partials) * len(fn.outputs) > SYMPY_SAMPLE
    if sampled:
        sample = sorted(rng.sample(sample, max(1, SYMPY_SAMPLE // len(fn.outputs))))
        report.notes.append(f"{fname}: sympy takes a sample of {len(sample)} of {len(partials)} "
                            f"partials (seed {seed}; those it has no time for are said to be "
                            "skipped); finite differences cover all")
    for k, out in enumerate(fn.outputs):
        grads = derived.grads[k]
        # a tensor output's gradient is that of the sum of its elements (docs/generated.md)
        converted = within(budget, functools.partial(_sympy_of, out, grads, leaves))
        flat = _flat_partial_index(program, fn, grads)
        for j in sample:
            label, symbol = partials[j]
            label = label if len(fn.outputs) == 1 else f"{label} (output {k})"
            line = None if converted is None else within(budget, functools.partial(
                _compare, fname, label, converted[1][flat[j]], converted[0], symbol, all_symbols,
                rng, budget))
            report.lines.append(line or Line(fname, label, "skipped", "sympy", budget.spent()))
    if float32 is not None and "grad" not in float32.ENTRY_POINTS.get(fname, {}):
        report.notes.append(f"{fname}: the numpy module has no {fname}_grad (docs/generated.md), "
                            "so only its float64 gradient was checked")
        float32 = None
    report.lines.extend(finite_difference_lines(program, module, fn, rng, float32=float32))
    return report


def _sympy_of(out: Node, grads: list[Node], leaves: dict[int, list[Any]]
              ) -> tuple[Any, list[Any]]:
    """The output (a tensor's sum of elements) and the gradient elements as sympy."""
    return (sympy.Add(*to_sympy([out], leaves)[0]),
            [e for g in grads for e in to_sympy([g], leaves)[0]])


def _compare(fname: str, label: str, mine: Any, forward: Any, symbol: Any,
             all_symbols: list[Any], rng: random.Random, budget: Budget) -> Line:
    """One partial: symbolically if sympy proves it in time, else numerically."""
    reference = sympy.diff(forward, symbol)
    start = time.perf_counter()
    if symbolically_equal(mine, reference, min(budget.per_partial, budget.left())):
        return Line(fname, label, "ok", "symbolic", f"{time.perf_counter() - start:.2f}s")
    free = sorted(reference.free_symbols | getattr(mine, "free_symbols", set()), key=str)
    equal, detail = numerically_equal(mine, reference, free or all_symbols[:1], rng)
    return Line(fname, label, _status(equal), "numeric", detail)


def _flat_partial_index(program: Program, fn: Function, grads: list[Node]) -> list[int]:
    """Map partial number -> position in the concatenated element list of ``grads``."""
    if not fn.uses_params:
        return list(range(sum(g.size for g in grads)))
    offsets: dict[str, int] = {}
    pos = 0
    for name, g in zip(program.params, grads):
        offsets[name] = pos
        pos += g.size
    return [offsets[t] + i for t, i in program.param_order]


def _random_args(fn: Function, rng: random.Random) -> list[Any]:
    def make(shape: tuple[int, ...]) -> Any:
        if shape == ():
            return rng.uniform(-1.5, 1.5)
        return [make(shape[1:]) for _ in range(shape[0])]

    return [make(s) for s in fn.arg_shapes]


def _unflatten(flat: list[float], shape: tuple[int, ...]) -> Any:
    if shape == ():
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    m, n = shape
    return [flat[i * n:(i + 1) * n] for i in range(m)]


def _split(flat: list[float], shapes: Sequence[tuple[int, ...]]) -> list[Any]:
    out = []
    pos = 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(_unflatten(flat[pos:pos + size], shape))
        pos += size
    return out


def finite_difference_lines(program: Program, module: types.ModuleType, fn: Function,
                            rng: random.Random, points: int = 2,
                            float32: types.ModuleType | None = None) -> list[Line]:
    """Central differences of the generated forward function (of the sum of a tensor output's
    elements) vs the generated gradient; a partial with no finite sample is 'not checked'.

    With ``float32`` (a float32 numpy module with ``f_grad``), the sample points are rounded to
    float32 (so both modules see the same numbers) and that module's gradient is compared with
    the same float64 central differences, at :data:`FLOAT32_TOL`: lines of method ``float32``.
    """
    forward = entry_point(module, fn.name, "value")
    backward = entry_point(module, fn.name, "grad")
    n_out = len(fn.outputs)
    worst: dict[str, tuple[float, str]] = {}
    worst32: dict[str, tuple[float, str]] = {}
    every: list[str] = []
    for _ in range(points):
        args = _random_args(fn, rng)
        if float32 is not None:
            args = [_to_float32(a) for a in args]
        if fn.uses_params:
            base = [rng.uniform(-1, 1) for _ in program.param_order]
            if float32 is not None:
                base = _to_float32(base)
            labels = program.param_names
            evaluate = functools.partial(_eval_params, forward, args, n_out)
            _, grads = backward(base, *args)
            rows = [list(r) for r in (grads if n_out > 1 else [grads])]
        else:
            base = [x for a in args for x in flatten_values(a)]
            labels = [name if shape == () else f"{name}[{i}]"
                      for name, shape in zip(fn.arg_names, fn.arg_shapes)
                      for i in range(math.prod(shape))]
            evaluate = functools.partial(_eval_args, forward, fn.arg_shapes, n_out)
            _, grads = backward(*args)
            rows = [[x for g in row for x in flatten_values(g)]
                    for row in (grads if n_out > 1 else [grads])]
        low = None if float32 is None else _float32_gradient(float32, fn, base, args)
        for k, row in enumerate(rows):
            for i, label in enumerate(labels):
                fd = _central(functools.partial(_output, evaluate, k), base, i)
                shown = label if n_out == 1 else f"{label} (output {k})"
                every.append(shown)
                _record(worst, shown, row[i], fd)
                if low is not None:
                    _record(worst32, shown, low[i], fd)
    lines = _fd_lines(fn.name, every, worst, "finite-diff", FLOAT64_TOL)
    if float32 is not None:
        lines.extend(_fd_lines(fn.name, every, worst32, "float32", FLOAT32_TOL))
    return lines


def _fd_lines(fname: str, every: list[str], worst: dict[str, tuple[float, str]], method: str,
              tol: float) -> list[Line]:
    lines = []
    for label in dict.fromkeys(every):
        if label not in worst:
            lines.append(Line(fname, label, "skipped", method,
                              "not checked: not finite at the sample points"))
            continue
        err, detail = worst[label]
        status = "ok" if err <= tol else "mismatch"
        lines.append(Line(fname, label, status, method, detail if status != "ok" else ""))
    return lines


def _to_float32(value: Any) -> Any:
    """A number, or nested lists of numbers, rounded to the nearest float32 (as Python floats)."""
    if isinstance(value, list):
        return [_to_float32(v) for v in value]
    return struct.unpack("f", struct.pack("f", value))[0]


def _float32_gradient(module: types.ModuleType, fn: Function, base: list[float],
                      args: list[Any]) -> list[float]:
    """The flat gradient (aligned with the finite differences' labels) from a float32 numpy
    module's ``f_grad``, for one example (a batch of one)."""
    grad = entry_point(module, fn.name, "grad")
    batch = [[a] for a in args]  # the batch axis
    if fn.uses_params:
        _, g = grad(base, *batch)
        return [float(x) for x in g.reshape(-1)]
    _, grads = grad(*batch)
    return [float(x) for g in grads for x in g.reshape(-1)]


def _eval_params(forward: Callable[..., Any], args: list[Any], n_out: int, v: list[float]
                 ) -> list[float]:
    value = forward(v, *args)
    return [_total(x) for x in value] if n_out > 1 else [_total(value)]


def _total(value: Any) -> float:
    """A value's sum of elements (a scalar is itself)."""
    return math.fsum(flatten_values(value)) if isinstance(value, list) else float(value)


def _eval_args(forward: Callable[..., Any], shapes: Sequence[tuple[int, ...]], n_out: int,
               v: list[float]) -> list[float]:
    value = forward(*_split(v, shapes))
    return [_total(x) for x in value] if n_out > 1 else [_total(value)]


def _output(evaluate: Callable[[list[float]], list[float]], k: int, v: list[float]) -> float:
    return evaluate(v)[k]


def _central(f: Callable[[list[float]], float], base: list[float], i: int) -> float:
    h = 1e-6 * max(1.0, abs(base[i]))
    plus = list(base)
    minus = list(base)
    plus[i] += h
    minus[i] -= h
    return (f(plus) - f(minus)) / (2 * h)


def _record(worst: dict[str, tuple[float, str]], label: str, analytic: float, fd: float) -> None:
    if not (math.isfinite(analytic) and math.isfinite(fd)):
        return
    err = abs(analytic - fd) / max(1.0, abs(analytic), abs(fd))
    if label not in worst or err > worst[label][0]:
        worst[label] = (err, f"generated gradient {analytic:.9g}, central difference {fd:.9g}")


def check_rules(program: Program, fname: str, budget: Budget | None = None, seed: int = 0
                ) -> list[Line]:
    """Each user-written ``grad`` rule of a def against sympy's derivative of its body."""
    budget = budget or Budget(DEFAULT_BUDGET)
    fn = program.functions[fname]
    if not fn.rule_spans:
        return []
    custom = fn.outputs[0]
    n_in = custom.attr[0]
    body, hole = custom.args[n_in], custom.args[n_in + 1]
    rules = custom.args[n_in + 2:]
    leaves = {node.id: element_symbols(name, shape)
              for node, name, shape in zip(fn.inputs, fn.arg_names, fn.arg_shapes)}
    leaves[hole.id] = element_symbols("dout", hole.shape)
    converted = within(budget, functools.partial(_sympy_of_rules, body, rules, leaves))
    rng = random.Random(seed)
    lines = []
    for k, (name, node, span) in enumerate(zip(fn.arg_names, fn.inputs, custom.attr[1])):
        for i, x in enumerate(leaves[node.id]):
            label = name if node.shape == () else f"{name}[{i}]"
            line = None if converted is None else within(budget, functools.partial(
                _rule_line, program, fname, name, label, span, converted[1][k][i],
                converted[0], leaves[hole.id], x, rng, budget))
            lines.append(line or Line(fname, label, "skipped", "rule", budget.spent(), span=span))
    return lines


def _sympy_of_rules(body: Node, rules: Sequence[Node], leaves: dict[int, list[Any]]
                    ) -> tuple[list[Any], list[list[Any]]]:
    """The body's elements and each rule's elements as sympy (converted once per function)."""
    return to_sympy([body], leaves)[0], to_sympy(rules, leaves)


def _rule_line(program: Program, fname: str, name: str, label: str, span: Span, mine: Any,
               body_elems: list[Any], douts: list[Any], x: Any, rng: random.Random,
               budget: Budget) -> Line:
    reference = sum((d * sympy.diff(b, x) for d, b in zip(douts, body_elems)), sympy.Integer(0))
    if symbolically_equal(mine, reference, min(budget.per_partial, budget.left())):
        return Line(fname, label, "ok", "rule (symbolic)", span=span)
    free = sorted(reference.free_symbols | mine.free_symbols, key=str)
    equal, detail = numerically_equal(mine, reference, free, rng)
    where = f"{program.filename}:{span.line}:{span.col}"
    return Line(fname, label, _status(equal), "rule (numeric)",
                (f"the rule at {where} disagrees with d({fname})/d{name}: " + detail)
                if equal is False else detail, span=span)


def check_hessian(program: Program, fname: str, budget: Budget | None = None, seed: int = 0
                  ) -> list[Line]:
    """The Hessian exprgrad generates (the gradient differentiated again) against sympy's."""
    budget = budget or Budget(DEFAULT_BUDGET)
    fn = program.functions[fname]
    if fn.uses_params or len(fn.outputs) != 1 or any(s != () for s in fn.arg_shapes):
        return []
    leaves = {node.id: element_symbols(name, ()) for node, name in zip(fn.inputs, fn.arg_names)}
    symbols = [leaves[n.id][0] for n in fn.inputs]
    ours = second_derivatives(program, fn)
    reference = within(budget, functools.partial(_sympy_hessian, fn.outputs[0], leaves, symbols))
    rng = random.Random(seed)
    lines = []
    for i, row in enumerate(ours):
        for j, node in enumerate(row):
            label = f"{fn.arg_names[i]} d{fn.arg_names[j]}"
            line = None if reference is None else within(budget, functools.partial(
                _hessian_line, fname, label, node, leaves, reference[i, j], symbols, rng, budget))
            lines.append(line or Line(fname, label, "skipped", "hessian", budget.spent()))
    return lines


def _sympy_hessian(out: Node, leaves: dict[int, list[Any]], symbols: list[Any]) -> Any:
    return sympy.hessian(to_sympy([out], leaves)[0][0], symbols)


def _hessian_line(fname: str, label: str, node: Node, leaves: dict[int, list[Any]],
                  reference: Any, symbols: list[Any], rng: random.Random, budget: Budget) -> Line:
    mine = to_sympy([node], leaves)[0][0]
    if symbolically_equal(mine, reference, min(budget.per_partial, budget.left())):
        return Line(fname, label, "ok", "hessian (symbolic)")
    equal, detail = numerically_equal(mine, reference, symbols, rng)
    return Line(fname, label, _status(equal), "hessian (numeric)", detail)
