"""The op table: every primitive declared once, with everything each stage needs to know of it.

Each :class:`OpSpec` entry gives

- ``shape``: the output shape from the input shapes (raises :class:`ShapeMismatch`);
- ``vjp``: the derivative rule. **Convention**: ``vjp(b, g, out, args, attr)`` receives the graph
  builder ``b``, the output cotangent ``g`` (same shape as ``out``), the forward output node and
  the input nodes, and returns one IR node per input: the cotangent contribution for that input,
  or ``None`` when no gradient flows (a constant exponent, a step function). A contribution may
  have the output's shape where the input was a broadcast scalar; :mod:`exprgrad.ir.diff` sums it.
  Rules reuse the forward output where that is cheaper (``tanh' = 1 - out*out``).
- ``ref``: the reference implementation on Python floats (used to fold constants and to evaluate
  elements), following the numeric policy below; for elementwise ops only.
- ``py``: the scalar-Python emitter: ``py(args, consts, uses)`` turns argument expressions into
  one expression (one operation). It names modules and helpers through ``uses``
  (:class:`exprgrad.emit.module.Uses`; a template says ``{math}.tanh({0})`` or
  ``{_div}({0}, {1})``), which records them, so a module imports exactly what its code uses.
- ``np``: the numpy emitter: argument expressions to one array expression.
- ``np_calls``: the ``np.`` functions the numpy emitters may write (derived from the template
  for elementwise ops); the allowlist of :mod:`exprgrad.emit.verify` is built from these.
- ``mp``: where ``sym`` is a sympy function of its own (``sympy.tanh``), its mpmath counterpart,
  used by ``exprgrad check`` to evaluate expressions numerically.
- ``np_into``: for ops that numpy computes with one ufunc (or matrix product), the same operation
  written into a given output array (``np.add(a, b, out)``), or ``None`` where the form does not
  apply; the numpy backend uses it to reuse dead temporaries instead of allocating.
- ``np_view``: the numpy result may share memory with an argument (a transpose, an index).
- ``sym``: the sympy counterpart, on sympy expressions.
- ``unroll``: for tensor ops, how output elements are made from input elements with an "element
  algebra" (the scalar emitter, sympy and the evaluator each provide one).
- ``label``: the text shown in drawings.
- ``domain`` and ``kink``: where the op is real and smooth, and where a derivative is set by
  convention instead (the tests compare with sympy inside the domain, away from the kink).

Numeric policy (the generated code, the folder and the checker all follow it; see docs/numerics.md):
IEEE-754 results instead of Python exceptions. ``x/0`` is ``±inf`` (``nan`` for ``0/0``);
``log(0) = -inf``; ``log``, ``sqrt`` and ``log1p`` below their domain are ``nan``; ``exp``
overflow is ``inf``; a negative base to a non-integer power is ``nan``; ``sin``/``cos`` of ``±inf``
are ``nan``. Kinks: ``relu'(0) = 0``, ``abs'(0) = 0``, ``step'`` and ``sign'`` are 0; for
``max(a, b)`` and ``min(a, b)`` a tie sends the whole gradient to ``a``; they return ``nan`` when
an argument is ``nan``, and the gradient follows the argument returned. ``sqrt'(0) = inf``.
``d(a**b)/db = out * log(a)``, which is ``nan`` for ``a <= 0`` (logarithm outside its domain).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from .node import Node, Shape

if TYPE_CHECKING:  # the graph builds nodes through this table; rules only call its methods
    from .graph import Graph


class ShapeMismatch(Exception):
    """Raised by shape rules; the frontend turns it into an error at the source span."""


# ---------------------------------------------------------------------------------------------
# Runtime helpers. This text is copied verbatim into generated modules that use a helper (and is
# the only code besides straight-line arithmetic that they contain); it is also executed here so
# that constant folding computes exactly what generated code computes.

def _overflowing(fn: str, overflow: str = "math.inf") -> str:
    """``math.fn``, returning ``overflow`` where Python raises OverflowError."""
    return (f"def _{fn}(a):\n    try:\n        return math.{fn}(a)\n"
            f"    except OverflowError:\n        return {overflow}\n")


def _logarithm(fn: str, edge: str = "0.0") -> str:
    """``math.fn`` of a logarithm: ``-inf`` at the domain's edge, ``nan`` below it."""
    return (f"def _{fn}(a):\n    if a > {edge}:\n        return math.{fn}(a)\n"
            f"    if a == {edge}:\n        return -math.inf\n    return math.nan\n")


def _domain(fn: str, inside: str) -> str:
    """``math.fn`` where ``inside`` holds, ``nan`` elsewhere (and for nan)."""
    return f"def _{fn}(a):\n    if {inside}:\n        return math.{fn}(a)\n    return math.nan\n"


def _periodic(fn: str) -> str:
    """``math.fn`` of a periodic function: ``nan`` at the infinities, where Python raises."""
    return (f"def _{fn}(a):\n    if math.isinf(a):\n        return math.nan\n"
            f"    return math.{fn}(a)\n")


HELPERS: dict[str, str] = {
    # numpy backend: each argument must hold one value per example of the batch (numpy would
    # broadcast a single value, or a batch of one, over the batch without a word)
    "_batch_of": '''\
def _batch_of(a, batch, *shape):
    if a.shape != (batch, *shape):
        raise ValueError(f"an argument of shape {a.shape}: one value of shape {shape} per "
                         f"example of the batch ({batch}) was expected")
    return a
''',
    "_div": '''\
def _div(a, b):
    try:
        return a / b
    except ZeroDivisionError:
        if a != a or a == 0.0:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
''',
    "_pow": '''\
def _pow(a, b):
    try:
        r = a ** b
    except ZeroDivisionError:  # 0 to a negative power; -0.0 to an odd one is -inf (IEEE)
        return -math.inf if math.copysign(1.0, a) < 0.0 and b == int(b) and int(b) % 2 else \
            math.inf
    except OverflowError:
        return -math.inf if a < 0.0 and b == int(b) and int(b) % 2 else math.inf
    if isinstance(r, complex):
        return math.nan
    if a < 0.0 and math.isfinite(b) and b != math.floor(b):
        return math.nan  # (-inf) ** 0.5: a negative base to a non-integer power
    return r
''',
    "_exp": _overflowing("exp"),
    "_expm1": _overflowing("expm1"),
    "_sinh": _overflowing("sinh", "math.copysign(math.inf, a)"),
    "_cosh": _overflowing("cosh"),
    "_log": _logarithm("log"),
    "_log2": _logarithm("log2"),
    "_log10": _logarithm("log10"),
    "_log1p": _logarithm("log1p", "-1.0"),
    "_sqrt": _domain("sqrt", "a >= 0.0"),
    "_asin": _domain("asin", "-1.0 <= a <= 1.0"),
    "_acos": _domain("acos", "-1.0 <= a <= 1.0"),
    "_sin": _periodic("sin"),
    "_cos": _periodic("cos"),
    "_sigmoid": '''\
def _sigmoid(a):
    if a >= 0.0:
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)
''',
    "_softplus": '''\
def _softplus(a):
    if a > 0.0:
        return a + math.log1p(math.exp(-a))
    return math.log1p(math.exp(a))
''',
}

_helper_ns: dict[str, Any] = {"math": math}
for _src in HELPERS.values():
    exec(compile(_src, "<exprgrad helpers>", "exec"), _helper_ns)  # noqa: S102 - our own text


def _h(name: str) -> Callable[..., float]:
    return _helper_ns[name]  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------
# Element algebras: the interface tensor ops use to build their output elements.


class Algebra(Protocol):
    """Elements of one kind (floats, sympy expressions, generated statements)."""

    def scalar(self, op: str, args: Sequence[Any], attr: Any = None) -> Any: ...

    def zero(self) -> Any: ...

    def const(self, value: float) -> Any: ...


# ---------------------------------------------------------------------------------------------
# Shape rules


def _elementwise_shape(op: str, shapes: Sequence[Shape], attr: Any) -> Shape:
    out: Shape = ()
    for s in shapes:
        if s == ():
            continue
        if out == ():
            out = s
        elif s != out:
            shown = " and ".join(_shape_text(x) for x in shapes)
            raise ShapeMismatch(f"'{OPS[op].label}' needs equal shapes or a scalar, got {shown}")
    return out


def _shape_text(shape: Shape) -> str:
    if shape == ():
        return "a scalar"
    if len(shape) == 1:
        return f"a vector [{shape[0]}]"
    return "a matrix [" + ", ".join(str(d) for d in shape) + "]"


def _leaf_shape(op: str, shapes: Sequence[Shape], attr: Any) -> Shape:
    raise AssertionError(f"{op} nodes are made with Graph.make, not apply")


def _sum_shape(op: str, shapes: Sequence[Shape], attr: Any) -> Shape:
    return ()


def _matmul_shape(op: str, shapes: Sequence[Shape], attr: Any) -> Shape:
    a, b = shapes
    if a == () or b == ():
        raise ShapeMismatch("'@' needs vectors or matrices, not scalars (use '*')")
    if a[-1] != b[0]:
        raise ShapeMismatch(f"'@' cannot combine {_shape_text(a)} with {_shape_text(b)}: "
                            f"inner sizes {a[-1]} and {b[0]} differ")
    return a[:-1] + b[1:]


def _dot_shape(op: str, shapes: Sequence[Shape], attr: Any) -> Shape:
    a, b = shapes
    if len(a) != 1 or a != b:
        raise ShapeMismatch(f"dot needs two vectors of one size, got {_shape_text(a)} and "
                            f"{_shape_text(b)}")
    return ()


def _transpose_shape(op: str, shapes: Sequence[Shape], attr: Any) -> Shape:
    (a,) = shapes
    if len(a) != 2:
        raise ShapeMismatch(f"transpose needs a matrix, got {_shape_text(a)}")
    return (a[1], a[0])


def _outer_shape(op: str, shapes: Sequence[Shape], attr: Any) -> Shape:
    a, b = shapes
    if len(a) != 1 or len(b) != 1:
        raise ShapeMismatch("outer needs two vectors")
    return (a[0], b[0])


def _stack_shape(op: str, shapes: Sequence[Shape], attr: Any) -> Shape:
    if not shapes:
        raise ShapeMismatch("an empty vector [] has no shape")
    first = shapes[0]
    if len(first) >= 2:
        raise ShapeMismatch("values have at most two dimensions")
    for s in shapes[1:]:
        if s != first:
            raise ShapeMismatch(f"all items must have one shape, got {_shape_text(first)} and "
                                f"{_shape_text(s)}")
    return (len(shapes),) + first


def _index_shape(op: str, shapes: Sequence[Shape], attr: Any) -> Shape:
    (a,) = shapes
    if a == ():
        raise ShapeMismatch("a scalar cannot be indexed")
    if not 0 <= attr < a[0]:
        raise ShapeMismatch(f"index {attr} is out of range for {_shape_text(a)}")
    return a[1:]


def _scatter_shape(op: str, shapes: Sequence[Shape], attr: Any) -> Shape:
    return tuple(attr[1])


def _broadcast_shape(op: str, shapes: Sequence[Shape], attr: Any) -> Shape:
    assert shapes[0] == (), "only scalars are broadcast"
    return tuple(attr)


# ---------------------------------------------------------------------------------------------
# Unrolling tensor ops into elements (row-major flat lists).


def _elementwise_unroll(alg: Algebra, op: str, elems: Sequence[Sequence[Any]], attr: Any,
                        shapes: Sequence[Shape], out: Shape) -> list[Any]:
    n = 1
    for d in out:
        n *= d
    cols = [e if len(e) == n else [e[0]] * n for e in elems]
    return [alg.scalar(op, [c[i] for c in cols], attr) for i in range(n)]


def _sum_chain(alg: Algebra, items: Sequence[Any]) -> Any:
    if not items:
        return alg.zero()
    acc = items[0]
    for item in items[1:]:
        acc = alg.scalar("add", [acc, item])
    return acc


def _sum_unroll(alg: Algebra, op: str, elems: Sequence[Sequence[Any]], attr: Any,
                shapes: Sequence[Shape], out: Shape) -> list[Any]:
    return [_sum_chain(alg, elems[0])]


def _dot_elems(alg: Algebra, a: Sequence[Any], b: Sequence[Any]) -> Any:
    return _sum_chain(alg, [alg.scalar("mul", [x, y]) for x, y in zip(a, b)])


def _dot_unroll(alg: Algebra, op: str, elems: Sequence[Sequence[Any]], attr: Any,
                shapes: Sequence[Shape], out: Shape) -> list[Any]:
    return [_dot_elems(alg, elems[0], elems[1])]


def _rows(elems: Sequence[Any], shape: Shape) -> list[list[Any]]:
    if len(shape) == 1:
        return [list(elems)]
    m, n = shape
    return [list(elems[i * n:(i + 1) * n]) for i in range(m)]


def _cols(elems: Sequence[Any], shape: Shape) -> list[list[Any]]:
    if len(shape) == 1:
        return [[e] for e in elems]
    m, n = shape
    return [[elems[i * n + j] for i in range(m)] for j in range(n)]


def _matmul_unroll(alg: Algebra, op: str, elems: Sequence[Sequence[Any]], attr: Any,
                   shapes: Sequence[Shape], out: Shape) -> list[Any]:
    a_shape, b_shape = shapes
    rows = _rows(elems[0], a_shape)
    cols = _cols(elems[1], b_shape) if len(b_shape) == 2 else [list(elems[1])]
    return [_dot_elems(alg, r, c) for r in rows for c in cols]


def _transpose_unroll(alg: Algebra, op: str, elems: Sequence[Sequence[Any]], attr: Any,
                      shapes: Sequence[Shape], out: Shape) -> list[Any]:
    m, n = shapes[0]
    return [elems[0][i * n + j] for j in range(n) for i in range(m)]


def _outer_unroll(alg: Algebra, op: str, elems: Sequence[Sequence[Any]], attr: Any,
                  shapes: Sequence[Shape], out: Shape) -> list[Any]:
    return [alg.scalar("mul", [x, y]) for x in elems[0] for y in elems[1]]


def _stack_unroll(alg: Algebra, op: str, elems: Sequence[Sequence[Any]], attr: Any,
                  shapes: Sequence[Shape], out: Shape) -> list[Any]:
    return [e for item in elems for e in item]


def _index_unroll(alg: Algebra, op: str, elems: Sequence[Sequence[Any]], attr: Any,
                  shapes: Sequence[Shape], out: Shape) -> list[Any]:
    block = len(elems[0]) // shapes[0][0]
    return list(elems[0][attr * block:(attr + 1) * block])


def _scatter_unroll(alg: Algebra, op: str, elems: Sequence[Sequence[Any]], attr: Any,
                    shapes: Sequence[Shape], out: Shape) -> list[Any]:
    index, full = attr
    block = len(elems[0])
    result = [alg.zero()] * (full[0] * block)
    result[index * block:(index + 1) * block] = elems[0]
    return result


def _broadcast_unroll(alg: Algebra, op: str, elems: Sequence[Sequence[Any]], attr: Any,
                      shapes: Sequence[Shape], out: Shape) -> list[Any]:
    n = 1
    for d in out:
        n *= d
    return [elems[0][0]] * n


# ---------------------------------------------------------------------------------------------
# Derivative rules (see the convention in the module docstring).

Vjp = Callable[["Graph", Node, Node, Sequence[Node], Any], Sequence[Node | None]]


def _c(b: Graph, v: float) -> Node:
    return b.const(v)


def _vjp_add(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (g, g)


def _vjp_sub(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (g, b.apply("neg", g))


def _vjp_mul(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (b.apply("mul", g, a[1]), b.apply("mul", g, a[0]))


def _vjp_div(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    # d(a/b)/da = 1/b; d(a/b)/db = -a/b**2 = -out/b
    ga = b.apply("div", g, a[1])
    gb = b.apply("neg", b.apply("div", b.apply("mul", g, out), a[1]))
    return (ga, gb)


def _vjp_pow(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    base, expo = a
    if expo.op == "const":
        e = float(expo.attr)
        ga = b.apply("mul", g, b.apply("mul", expo, b.apply("pow", base, _c(b, e - 1.0))))
        return (ga, None)
    ga = b.apply("mul", g, b.apply("mul", expo, b.apply("pow", base, b.apply("sub", expo,
                                                                              _c(b, 1.0)))))
    gb = b.apply("mul", g, b.apply("mul", out, b.apply("log", base)))
    return (ga, gb)


def _vjp_neg(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (b.apply("neg", g),)


def _vjp_exp(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (b.apply("mul", g, out),)


def _vjp_log(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (b.apply("div", g, a[0]),)


def _vjp_tanh(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (b.apply("mul", g, b.apply("sub", _c(b, 1.0), b.apply("mul", out, out))),)


def _vjp_sigmoid(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any
                 ) -> Sequence[Node | None]:
    # sigmoid' = out * (1 - out) = out * sigmoid(-x); the second form does not cancel for
    # large x (1 - out is 0 from x = 37 on, where the derivative is about exp(-x))
    return (b.apply("mul", g, b.apply("mul", out, b.apply("sigmoid", b.apply("neg", a[0])))),)


def _vjp_relu(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (b.apply("mul", g, b.apply("step", a[0])),)


def _vjp_sin(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (b.apply("mul", g, b.apply("cos", a[0])),)


def _vjp_cos(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (b.apply("neg", b.apply("mul", g, b.apply("sin", a[0]))),)


def _vjp_sqrt(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (b.apply("div", b.apply("mul", g, _c(b, 0.5)), out),)


def _vjp_abs(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (b.apply("mul", g, b.apply("sign", a[0])),)


def _vjp_softplus(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any
                  ) -> Sequence[Node | None]:
    return (b.apply("mul", g, b.apply("sigmoid", a[0])),)


def _vjp_log1p(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any
               ) -> Sequence[Node | None]:
    return (b.apply("div", g, b.apply("add", _c(b, 1.0), a[0])),)


def _vjp_expm1(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any
               ) -> Sequence[Node | None]:
    # expm1' = exp(x), computed as such: out + 1 would cancel for x << 0 (0 below x = -38)
    return (b.apply("mul", g, b.apply("exp", a[0])),)


def _vjp_log2(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (b.apply("div", g, b.apply("mul", a[0], _c(b, math.log(2.0)))),)


def _vjp_log10(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any
               ) -> Sequence[Node | None]:
    return (b.apply("div", g, b.apply("mul", a[0], _c(b, math.log(10.0)))),)


def _vjp_sinh(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (b.apply("mul", g, b.apply("cosh", a[0])),)


def _vjp_cosh(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (b.apply("mul", g, b.apply("sinh", a[0])),)


def _vjp_atan(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (b.apply("div", g, b.apply("add", _c(b, 1.0), b.apply("mul", a[0], a[0]))),)


def _one_minus_square_root(b: Graph, x: Node) -> Node:
    return b.apply("sqrt", b.apply("sub", _c(b, 1.0), b.apply("mul", x, x)))


def _vjp_asin(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (b.apply("div", g, _one_minus_square_root(b, a[0])),)


def _vjp_acos(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (b.apply("neg", b.apply("div", g, _one_minus_square_root(b, a[0]))),)


def _vjp_atan2(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any
               ) -> Sequence[Node | None]:
    # atan2(y, x): d/dy = x / (x^2 + y^2), d/dx = -y / (x^2 + y^2)
    y, x = a
    scaled = b.apply("div", g, b.apply("add", b.apply("mul", x, x), b.apply("mul", y, y)))
    return (b.apply("mul", scaled, x), b.apply("neg", b.apply("mul", scaled, y)))


def _vjp_hypot(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any
               ) -> Sequence[Node | None]:
    # d/da hypot(a, b) = a / out (nan at the origin, where hypot has a kink)
    scaled = b.apply("div", g, out)
    return (b.apply("mul", scaled, a[0]), b.apply("mul", scaled, a[1]))


def _heaviside(x: Any, h0: Any = None) -> Any:
    """sympy's ``Heaviside(x, h0)`` on mpmath numbers."""
    if x > 0:
        return 1
    if x < 0:
        return 0
    return h0 if h0 is not None else 0.5


def _vjp_none(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return tuple(None for _ in a)


def _picked(pick: str) -> Vjp:
    """The rule of max or min: the whole gradient goes to the argument whose value is returned,
    as ``pick`` (1 for the first argument, 0 for the second) decides it, ties and nan included."""

    def vjp(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any
            ) -> Sequence[Node | None]:
        first = b.apply(pick, a[0], a[1])
        return (b.apply("mul", g, first), b.apply("mul", g, b.apply("sub", _c(b, 1.0), first)))

    return vjp


def _vjp_sum(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    if a[0].shape == ():
        return (g,)
    return (b.apply("broadcast", g, attr=a[0].shape),)


def _vjp_broadcast(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any
                   ) -> Sequence[Node | None]:
    return (b.apply("sum", g),)


def _vjp_dot(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any) -> Sequence[Node | None]:
    return (b.apply("mul", g, a[1]), b.apply("mul", g, a[0]))


def _vjp_matmul(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any
                ) -> Sequence[Node | None]:
    x, y = a
    if len(x.shape) == 1 and len(y.shape) == 1:
        return (b.apply("mul", g, y), b.apply("mul", g, x))
    if len(y.shape) == 1:  # (m,k) @ (k,)
        return (b.apply("outer", g, y), b.apply("matmul", b.apply("transpose", x), g))
    if len(x.shape) == 1:  # (k,) @ (k,n)
        return (b.apply("matmul", y, g), b.apply("outer", x, g))
    return (b.apply("matmul", g, b.apply("transpose", y)),
            b.apply("matmul", b.apply("transpose", x), g))


def _vjp_transpose(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any
                   ) -> Sequence[Node | None]:
    return (b.apply("transpose", g),)


def _vjp_outer(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any
               ) -> Sequence[Node | None]:
    return (b.apply("matmul", g, a[1]), b.apply("matmul", a[0], g))


def _vjp_stack(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any
               ) -> Sequence[Node | None]:
    return tuple(b.apply("index", g, attr=i) for i in range(len(a)))


def _vjp_index(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any
               ) -> Sequence[Node | None]:
    return (b.apply("scatter", g, attr=(attr, a[0].shape)),)


def _vjp_scatter(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any
                 ) -> Sequence[Node | None]:
    return (b.apply("index", g, attr=attr[0]),)


# ---------------------------------------------------------------------------------------------
# Exact simplifications (return a replacement node or None). "Where safe": x*0 -> 0 treats a
# structural zero as strong (as JAX's symbolic zeros do); no rule changes a finite result.


def _is_const(n: Node, v: float) -> bool:
    return n.op == "const" and float(n.attr) == v and not math.isnan(float(n.attr))


def _same_shape(n: Node, shape: Shape) -> Node | None:
    return n if n.shape == shape else None


def _simp_add(b: Graph, a: Sequence[Node], attr: Any, shape: Shape) -> Node | None:
    if _is_const(a[1], 0.0):
        return _same_shape(a[0], shape)
    if _is_const(a[0], 0.0):
        return _same_shape(a[1], shape)
    # IEEE defines x - y as x + (-y), so these are exact
    if a[1].op == "neg":
        return b.apply("sub", a[0], a[1].args[0])
    if a[0].op == "neg":
        return b.apply("sub", a[1], a[0].args[0])
    return None


def _simp_sub(b: Graph, a: Sequence[Node], attr: Any, shape: Shape) -> Node | None:
    if _is_const(a[1], 0.0):
        return _same_shape(a[0], shape)
    if _is_const(a[0], 0.0) and a[1].shape == shape:
        return b.apply("neg", a[1])
    if a[1].op == "neg":
        return b.apply("add", a[0], a[1].args[0])
    return None


def _simp_mul(b: Graph, a: Sequence[Node], attr: Any, shape: Shape) -> Node | None:
    for x, y in ((a[0], a[1]), (a[1], a[0])):
        if _is_const(y, 1.0):
            return _same_shape(x, shape)
        if _is_const(y, 0.0):
            return b.const(0.0, shape)
        if _is_const(y, -1.0) and x.shape == shape:
            return b.apply("neg", x)
    return None


def _simp_div(b: Graph, a: Sequence[Node], attr: Any, shape: Shape) -> Node | None:
    if _is_const(a[1], 1.0):
        return _same_shape(a[0], shape)
    return None


def _simp_neg(b: Graph, a: Sequence[Node], attr: Any, shape: Shape) -> Node | None:
    if a[0].op == "neg":
        return a[0].args[0]
    return None


def _simp_pow(b: Graph, a: Sequence[Node], attr: Any, shape: Shape) -> Node | None:
    if _is_const(a[1], 1.0):
        return _same_shape(a[0], shape)
    if _is_const(a[1], 0.0):
        return b.const(1.0, shape)
    return None


def _simp_index(b: Graph, a: Sequence[Node], attr: Any, shape: Shape) -> Node | None:
    x = a[0]
    if x.op == "stack":
        return x.args[attr]
    if x.op == "const":
        return b.const(float(x.attr), shape)
    if x.op == "broadcast":
        return x.args[0] if shape == () else b.apply("broadcast", x.args[0], attr=shape)
    if x.op == "scatter" and x.attr[0] != attr:
        return b.const(0.0, shape)
    if x.op == "scatter":
        return x.args[0]
    return None


def _simp_broadcast(b: Graph, a: Sequence[Node], attr: Any, shape: Shape) -> Node | None:
    if a[0].op == "const":
        return b.const(float(a[0].attr), shape)
    return None


def _simp_transpose(b: Graph, a: Sequence[Node], attr: Any, shape: Shape) -> Node | None:
    if a[0].op == "transpose":
        return a[0].args[0]
    return None


# ---------------------------------------------------------------------------------------------
# numpy emitters for tensor ops. In numpy code every value that depends on the function's
# arguments carries the batch as a leading axis ("batched"); parameters and constants do not.


@dataclass(frozen=True)
class NpCtx:
    batched: Sequence[bool]  # per argument
    shapes: Sequence[Shape]  # per-example shapes of the arguments
    out: Shape
    batch: str  # the expression for the batch size
    consts: Sequence[float | None] = ()  # per argument: its value when it is a scalar constant
    ones: Callable[[int], str] = lambda n: f"np.ones({n})"  # a vector of n ones (hoisted)
    #: the module's float type (``np.float64`` or ``np.float32``): every array an emitter
    #: creates from numbers alone takes it, so a float32 module never makes a float64 array
    dtype: str = "np.float64"


def np_t(text: str) -> str:
    """The transpose of a numpy expression, cancelling a trailing ``.T`` on a plain name."""
    if text.endswith(".T") and text[:-2].isidentifier():
        return text[:-2]
    return f"{text}.T"


#: a numpy function call form ``(ufunc, x, y)``, or a whole expression where there is none
NpForm = tuple[str, str, str] | str
_OPERATORS = {"np.multiply": "*", "np.matmul": "@"}


def _form_emitters(form: Callable[[Sequence[str], NpCtx], NpForm]) -> tuple[Any, Any]:
    """The ``np`` and ``np_into`` emitters of an op whose numpy code is chosen by ``form``."""

    def np_(a: Sequence[str], attr: Any, c: NpCtx) -> str:
        f = form(a, c)
        if isinstance(f, str):
            return f
        ufunc, x, y = f
        op = _OPERATORS.get(ufunc)
        return f"{x} {op} {y}" if op else f"{ufunc}({x}, {y})"

    def into(a: Sequence[str], attr: Any, c: NpCtx, out: str) -> str | None:
        f = form(a, c)
        return None if isinstance(f, str) else f"{f[0]}({f[1]}, {f[2]}, {out})"

    return np_, into


def _pow_form(a: Sequence[str], c: NpCtx) -> NpForm:
    e = c.consts[1] if len(c.consts) > 1 else None
    return ("np.multiply", a[0], a[0]) if e == 2.0 else ("np.power", a[0], a[1])


def _ufunc_into(ufunc: str) -> Callable[[Sequence[str], Any, NpCtx, str], str]:
    def into(a: Sequence[str], attr: Any, c: NpCtx, out: str) -> str:
        return f"{ufunc}({', '.join(a)}, {out})"

    return into


def _shape_lse(op: str, shapes: Sequence[Shape], attr: Any) -> Shape:
    if len(shapes[0]) != 1:
        raise ShapeMismatch(f"logsumexp needs a vector, got {_shape_text(shapes[0])}")
    return ()


def _unroll_lse(alg: Algebra, op: str, elems: Sequence[Sequence[Any]], attr: Any,
                shapes: Sequence[Shape], out: Shape) -> list[Any]:
    """log(sum(exp(v))) computed stably: m + log(sum(exp(v - m))) with m = max(v)."""
    items = elems[0]
    m = items[0]
    for item in items[1:]:
        m = alg.scalar("max", [m, item])
    total = _sum_chain(alg, [alg.scalar("exp", [alg.scalar("sub", [v, m])]) for v in items])
    return [alg.scalar("add", [m, alg.scalar("log", [total])])]


def _vjp_lse(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any
             ) -> Sequence[Node | None]:
    # d/dv log(sum(exp(v))) = softmax(v) = exp(v - out); the numpy backend computes this
    # exp(v - out) as exp(v - max) / sum, reusing the forward pass's exponentials
    return (b.apply("mul", g, b.apply("exp", b.apply("sub", a[0], out))),)


def _np_sum(a: Sequence[str], attr: Any, c: NpCtx) -> str:
    rank = len(c.shapes[0])
    if not c.batched[0] or rank == 0:
        return f"np.sum({a[0]})" if not c.batched[0] else a[0]
    if rank == 1:  # a matrix-vector product: much faster than a reduction over short rows
        return f"{a[0]} @ {c.ones(c.shapes[0][0])}"
    axes = ", ".join(str(i) for i in range(1, rank + 1))
    return f"{a[0]}.sum(({axes},))"


def _np_dot(a: Sequence[str], attr: Any, c: NpCtx) -> str:
    if any(c.batched):
        return f"({a[0]} * {a[1]}) @ {c.ones(c.shapes[0][0])}"
    return f"np.dot({a[0]}, {a[1]})"


def _matmul_form(a: Sequence[str], c: NpCtx) -> NpForm:
    """``(ufunc, x, y)`` when the product is one call ``ufunc(x, y)``, else an expression."""
    (ba, bb), (sa, sb) = c.batched, c.shapes
    x, y = a
    if len(sa) == 1 and len(sb) == 1:
        return _np_dot(a, None, c)
    if len(sb) == 1:  # (m,k) @ (k,)
        if bb and not ba:  # a batch of vectors times a fixed matrix: y @ x.T
            if sa[1] == 1:  # inner size 1: a broadcast product, not a matrix product
                return ("np.multiply", y, np_t(x))
            return ("np.matmul", y, np_t(x))
        if ba and not bb:
            return ("np.matmul", x, y)
        if not ba and not bb:
            return ("np.matmul", x, y)
        return f"({x} @ {y}[:, :, None])[:, :, 0]"
    if len(sa) == 1 and ba and bb:  # (k,) @ (k,n), both batched
        return f"({x}[:, None, :] @ {y})[:, 0, :]"
    if len(sa) == 1 and ba and sa[0] == 1:  # inner size 1: (B,1) * (1,n)
        return ("np.multiply", x, y)
    return ("np.matmul", x, y)


_POW_NP = _form_emitters(_pow_form)
_MATMUL_NP = _form_emitters(_matmul_form)


def _np_transpose(a: Sequence[str], attr: Any, c: NpCtx) -> str:
    return f"np.swapaxes({a[0]}, 1, 2)" if c.batched[0] else np_t(a[0])


def _np_outer(a: Sequence[str], attr: Any, c: NpCtx) -> str:
    return f"{a[0]}[..., :, None] * {a[1]}[..., None, :]"


def _np_full(item: str, batched: bool, shape: Shape, c: NpCtx) -> str:
    """An item as a batched array of its per-example shape."""
    if batched:
        return item
    dims = ", ".join([c.batch, *map(str, shape)])
    return f"np.broadcast_to({item}, ({dims},))"


def _np_stack(a: Sequence[str], attr: Any, c: NpCtx) -> str:
    if len(a) == 1:
        return f"{a[0]}[:, None]" if c.batched[0] else f"{a[0]}[None]"
    if not any(c.batched):
        return "np.stack((" + ", ".join(a) + ",))"
    items = [_np_full(x, b, s, c) for x, b, s in zip(a, c.batched, c.shapes)]
    return "np.stack((" + ", ".join(items) + ",), 1)"


def _np_index(a: Sequence[str], attr: Any, c: NpCtx) -> str:
    return f"{a[0]}[:, {attr}]" if c.batched[0] else f"{a[0]}[{attr}]"


def _np_scatter(a: Sequence[str], attr: Any, c: NpCtx) -> str:
    index, full = attr
    if full[0] == 1:  # the whole (one-row) tensor: just a new axis
        return f"{a[0]}[:, None]" if c.batched[0] else f"{a[0]}[None]"
    zero = f"np.zeros_like({a[0]})"
    items = [a[0] if i == index else zero for i in range(full[0])]
    return "np.stack((" + ", ".join(items) + ",)" + (", 1)" if c.batched[0] else ")")


def _np_broadcast(a: Sequence[str], attr: Any, c: NpCtx) -> str:
    shape = tuple(attr)
    if not c.batched[0]:
        return f"np.broadcast_to({a[0]}, ({', '.join(map(str, shape))},))"
    expand = ", ".join([":"] + ["None"] * len(shape))
    dims = ", ".join([c.batch, *map(str, shape)])
    return f"np.broadcast_to({a[0]}[{expand}], ({dims},))"


# ---------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True)
class OpSpec:
    name: str
    arity: int | None  # None: variadic
    shape_of: Callable[[str, Sequence[Shape], Any], Shape]
    vjp: Vjp | None
    label: str
    ref: Callable[..., float] | None = None
    py: PyEmitter | None = None
    np: Callable[[Sequence[str], Any, NpCtx], str] | None = None
    np_into: Callable[[Sequence[str], Any, NpCtx, str], str | None] | None = None
    np_view: bool = False
    np_calls: frozenset[str] = frozenset()
    sym: Callable[..., Any] | None = None
    mp: Callable[..., Any] | None = None
    unroll: Callable[..., list[Any]] | None = None
    simplify: Callable[[Graph, Sequence[Node], Any, Shape], Node | None] | None = None
    builtin: str | None = None  # the name users call it by, for unary/binary builtins
    elementwise: bool = False
    #: where the op is real and smooth (None: everywhere); tests sample only inside it
    domain: Callable[..., bool] | None = None
    #: the argument where the op has a kink, its derivative set by convention (relu'(0) = 0)
    kink: float | None = None

    def fold(self, values: Sequence[float], attr: Any, shapes: Sequence[Shape], out: Shape
             ) -> float | None:
        if self.elementwise and self.ref is not None:
            return float(self.ref(*values))
        if self.unroll is not None:
            alg = EvalAlgebra()
            elems = [[float(v)] * _size(s) for v, s in zip(values, shapes)]
            result = self.unroll(alg, self.name, elems, attr, shapes, out)
            if result and all(repr(r) == repr(result[0]) for r in result):
                return float(result[0])
        return None


def _size(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class EvalAlgebra:
    """Elements are Python floats; scalar ops use the reference implementations."""

    def scalar(self, op: str, args: Sequence[Any], attr: Any = None) -> Any:
        ref = OPS[op].ref
        assert ref is not None, f"{op} has no reference implementation"
        return float(ref(*args))

    def zero(self) -> Any:
        return 0.0

    def const(self, value: float) -> Any:
        return value


def _sym() -> Any:
    import sympy

    return sympy


def _mpmath() -> Any:
    import mpmath

    return mpmath


class Uses(Protocol):
    """What an emitter names modules and helpers through (see exprgrad.emit.module.Uses)."""

    def __getitem__(self, key: str) -> str: ...

    def format(self, template: str, args: Sequence[str]) -> str: ...


#: ``py(argument texts, argument constants or None, uses) -> expression text``
PyEmitter = Callable[[Sequence[str], Sequence[float | None], Uses], str]


def _py_pow(a: Sequence[str], k: Sequence[float | None], u: Uses) -> str:
    e = k[1]
    if e == 2.0:
        return f"{a[0]} * {a[0]}"
    if e == 3.0:
        return f"{a[0]} * {a[0]} * {a[0]}"
    if e == 1.0:
        return a[0]
    if e == -1.0:
        return f"{u['_div']}(1.0, {a[0]})"
    return f"{u['_pow']}({a[0]}, {a[1]})"


def _template(text: str) -> PyEmitter:
    def emit(a: Sequence[str], k: Sequence[float | None], u: Uses) -> str:
        return u.format(text, a)

    return emit


def _np_template(text: str) -> Callable[[Sequence[str], Any, NpCtx], str]:
    """``{0}``, ``{1}``: the arguments; ``{dtype}``: the module's float type (NpCtx.dtype)."""

    def emit(a: Sequence[str], attr: Any, ctx: NpCtx) -> str:
        return text.format(*a, dtype=ctx.dtype)

    return emit


_NP_CALL = re.compile(r"\bnp\.([A-Za-z_][A-Za-z0-9_]*)")


def _unary(name: str, vjp: Vjp, ref: Callable[..., float], py: str, np_: str,
           sym: Callable[..., Any], builtin: str | None = None, simplify: Any = None,
           ufunc: str | None = None, mp: Callable[..., Any] | None = None,
           domain: Callable[..., bool] | None = None, kink: float | None = None) -> OpSpec:
    """``py`` is a template (see :class:`Uses`); ``np_`` is a template over ``{0}``, or the bare
    name of the numpy ufunc computing it."""
    if "{" not in np_:
        ufunc, np_ = np_, np_ + "({0})"
    return OpSpec(
        name=name, arity=1, shape_of=_elementwise_shape, vjp=vjp, label=name, ref=ref,
        py=_template(py), np=_np_template(np_),
        np_into=_ufunc_into(ufunc) if ufunc else None, np_calls=_np_calls_of(np_, ufunc),
        sym=sym, mp=mp, unroll=_elementwise_unroll,
        builtin=builtin if builtin is not None else name, elementwise=True, simplify=simplify,
        domain=domain, kink=kink,
    )


def _binary(name: str, label: str, vjp: Vjp, ref: Callable[..., float], py: PyEmitter | str,
            np_: str, sym: Callable[..., Any], builtin: str | None = None,
            simplify: Any = None, ufunc: str | None = None,
            mp: Callable[..., Any] | None = None,
            domain: Callable[..., bool] | None = None) -> OpSpec:
    """Like :func:`_unary`; ``py`` may also be an emitter function."""
    if "{" not in np_ and np_:
        ufunc, np_ = np_, np_ + "({0}, {1})"
    return OpSpec(
        name=name, arity=2, shape_of=_elementwise_shape, vjp=vjp, label=label, ref=ref,
        py=_template(py) if isinstance(py, str) else py,
        np=_np_template(np_), np_into=_ufunc_into(ufunc) if ufunc else None,
        np_calls=_np_calls_of(np_, ufunc), sym=sym, mp=mp, unroll=_elementwise_unroll,
        builtin=builtin, elementwise=True, simplify=simplify, domain=domain,
    )


def _np_calls_of(template: str, ufunc: str | None) -> frozenset[str]:
    """The numpy functions an elementwise op's numpy template (and its ufunc) write."""
    calls = set(_NP_CALL.findall(template))
    if ufunc:
        calls.add(ufunc.removeprefix("np."))
    return frozenset(calls)


def _tensor(name: str, arity: int | None, shape_of: Any, vjp: Vjp, unroll: Any, np_: Any,
            np_calls: str, builtin: str | None = None, simplify: Any = None,
            label: str | None = None, np_into: Any = None, np_view: bool = False) -> OpSpec:
    """``np_calls``: the numpy functions ``np_`` and ``np_into`` may write, space-separated."""
    return OpSpec(name=name, arity=arity, shape_of=shape_of, vjp=vjp, label=label or name,
                  np=np_, np_calls=frozenset(np_calls.split()), unroll=unroll, builtin=builtin,
                  simplify=simplify, np_into=np_into, np_view=np_view)


def _py_div(a: Sequence[str], k: Sequence[float | None], u: Uses) -> str:
    if k[1] is not None and k[1] != 0.0 and not math.isnan(k[1]):
        return f"{a[0]} / {a[1]}"
    return f"{u['_div']}({a[0]}, {a[1]})"


def _ref_max(a: float, b: float) -> float:
    return a if a >= b or a != a else b


def _ref_min(a: float, b: float) -> float:
    return a if a <= b or a != a else b


def _ref_sign(a: float) -> float:
    return 1.0 if a > 0.0 else (-1.0 if a < 0.0 else 0.0 * a)


def _ref_where(c: float, a: float, b: float) -> float:
    return a if c != 0.0 else b


def _vjp_where(b: Graph, g: Node, out: Node, a: Sequence[Node], attr: Any
               ) -> Sequence[Node | None]:
    """where(c, x, y): the gradient goes to the argument returned (x where c is not 0, y
    where it is); none to the condition, a step function of its own."""
    zero = _c(b, 0.0)
    return (None, b.apply("where", a[0], g, zero), b.apply("where", a[0], zero, g))


#: the comparison operators: op name, Python operator, value, sympy value
_COMPARISONS: list[tuple[str, str, Callable[[Any, Any], float], Callable[[Any, Any], Any]]] = [
    ("lt", "<", lambda a, b: 1.0 if a < b else 0.0,
     lambda a, b: _sym().Piecewise((1, a < b), (0, True))),
    ("le", "<=", lambda a, b: 1.0 if a <= b else 0.0,
     lambda a, b: _sym().Piecewise((1, a <= b), (0, True))),
    ("gt", ">", lambda a, b: 1.0 if a > b else 0.0,
     lambda a, b: _sym().Piecewise((1, a > b), (0, True))),
    ("ge", ">=", lambda a, b: 1.0 if a >= b else 0.0,
     lambda a, b: _sym().Piecewise((1, a >= b), (0, True))),
    ("eq", "==", lambda a, b: 1.0 if a == b else 0.0,
     lambda a, b: _sym().Piecewise((1, _sym().Eq(a, b)), (0, True))),
    ("ne", "!=", lambda a, b: 1.0 if a != b else 0.0,
     lambda a, b: _sym().Piecewise((1, _sym().Ne(a, b)), (0, True))),
]


OPS: dict[str, OpSpec] = {}


def _register(*specs: OpSpec) -> None:
    for s in specs:
        assert s.name not in OPS, f"op {s.name} declared twice"
        OPS[s.name] = s


_register(
    # leaves: made by Graph.make; their values come from outside the op table
    OpSpec("const", 0, _leaf_shape, _vjp_none, "const"),
    OpSpec("input", 0, _leaf_shape, _vjp_none, "input"),
    OpSpec("param", 0, _leaf_shape, _vjp_none, "param"),
    OpSpec("hole", 0, _leaf_shape, _vjp_none, "dout"),
    # a call of a function with a user-written derivative rule; see exprgrad.ir.diff
    OpSpec("custom", None, _leaf_shape, None, "custom", np_view=True),
    _binary("add", "+", _vjp_add, lambda a, b: a + b, "{0} + {1}", "{0} + {1}",
            lambda a, b: a + b, simplify=_simp_add, ufunc="np.add"),
    _binary("sub", "-", _vjp_sub, lambda a, b: a - b, "{0} - {1}", "{0} - {1}",
            lambda a, b: a - b, simplify=_simp_sub, ufunc="np.subtract"),
    _binary("mul", "*", _vjp_mul, lambda a, b: a * b, "{0} * {1}", "{0} * {1}",
            lambda a, b: a * b, simplify=_simp_mul, ufunc="np.multiply"),
    _binary("div", "/", _vjp_div, _h("_div"), _py_div, "{0} / {1}", lambda a, b: a / b,
            simplify=_simp_div, ufunc="np.divide",
           domain=lambda a, b: b != 0),
    replace(_binary("pow", "**", _vjp_pow, _h("_pow"), _py_pow, "", lambda a, b: a**b,
                    simplify=_simp_pow, domain=lambda a, b: a > 0),
            np=_POW_NP[0], np_into=_POW_NP[1], np_calls=frozenset({"multiply", "power"})),
    # max and min return the first argument on a tie and nan when either argument is nan;
    # pick_max and pick_min (internal) say which argument they returned, for the gradient
    _binary("max", "max", _picked("pick_max"), _ref_max,
            "{0} if {0} >= {1} or {0} != {0} else {1}",
            "np.where(({0} >= {1}) | np.isnan({0}), {0}, {1})",
            lambda a, b: _sym().Max(a, b), builtin="max",
            mp=lambda *v: max(v, key=_mpmath().re), domain=lambda a, b: a != b),
    _binary("min", "min", _picked("pick_min"), _ref_min,
            "{0} if {0} <= {1} or {0} != {0} else {1}",
            "np.where(({0} <= {1}) | np.isnan({0}), {0}, {1})",
            lambda a, b: _sym().Min(a, b), builtin="min",
            mp=lambda *v: min(v, key=_mpmath().re), domain=lambda a, b: a != b),
    _binary("pick_max", "pick", _vjp_none, lambda a, b: 1.0 if a >= b or a != a else 0.0,
            "1.0 if {0} >= {1} or {0} != {0} else 0.0",
            "np.asarray(({0} >= {1}) | np.isnan({0}), {dtype})",
            lambda a, b: _sym().Heaviside(a - b, 1), domain=lambda a, b: a != b),
    _binary("pick_min", "pick", _vjp_none, lambda a, b: 1.0 if a <= b or a != a else 0.0,
            "1.0 if {0} <= {1} or {0} != {0} else 0.0",
            "np.asarray(({0} <= {1}) | np.isnan({0}), {dtype})",
            lambda a, b: _sym().Heaviside(b - a, 1), domain=lambda a, b: a != b),
    # comparisons: 1.0 when true, 0.0 when false (nan compares false, except !=); piecewise
    # constant, so their gradient is 0 everywhere, at a tie too (see docs/numerics.md)
    *(_binary(name, sym, _vjp_none, fn, f"1.0 if {{0}} {sym} {{1}} else 0.0",
              f"np.asarray({{0}} {sym} {{1}}, {{dtype}})", symfn, domain=lambda a, b: a != b)
      for name, sym, fn, symfn in _COMPARISONS),
    OpSpec("where", 3, _elementwise_shape, _vjp_where, "where", ref=_ref_where,
           py=_template("{1} if {0} != 0.0 else {2}"),
           np=_np_template("np.where({0} != 0.0, {1}, {2})"), np_calls=frozenset({"where"}),
           sym=lambda c, a, b: _sym().Piecewise((a, _sym().Ne(c, 0)), (b, True)),
           unroll=_elementwise_unroll,
           builtin="where", elementwise=True, domain=lambda c, a, b: c != 0),
    _binary("atan2", "atan2", _vjp_atan2, math.atan2, "{math}.atan2({0}, {1})", "np.arctan2",
            lambda a, b: _sym().atan2(a, b), builtin="atan2",
            mp=lambda y, x: _mpmath().atan2(y, x),
           domain=lambda y, x: x > 0 or y != 0),
    _binary("hypot", "hypot", _vjp_hypot, math.hypot, "{math}.hypot({0}, {1})", "np.hypot",
            lambda a, b: _sym().sqrt(a * a + b * b), builtin="hypot",
           domain=lambda a, b: a != 0 or b != 0),
    _unary("neg", _vjp_neg, lambda a: -a, "-{0}", "-{0}", lambda a: -a, builtin="",
           simplify=_simp_neg, ufunc="np.negative"),
    _unary("exp", _vjp_exp, _h("_exp"), "{_exp}({0})", "np.exp", lambda a: _sym().exp(a),
           mp=lambda a: _mpmath().exp(a)),
    _unary("expm1", _vjp_expm1, _h("_expm1"), "{_expm1}({0})", "np.expm1",
           lambda a: _sym().exp(a) - 1),
    _unary("log", _vjp_log, _h("_log"), "{_log}({0})", "np.log", lambda a: _sym().log(a),
           mp=lambda a: _mpmath().log(a),
           domain=lambda a: a > 0),
    _unary("log1p", _vjp_log1p, _h("_log1p"), "{_log1p}({0})", "np.log1p",
           lambda a: _sym().log(1 + a),
           domain=lambda a: a > -1),
    _unary("log2", _vjp_log2, _h("_log2"), "{_log2}({0})", "np.log2",
           lambda a: _sym().log(a) / _sym().log(2),
           domain=lambda a: a > 0),
    _unary("log10", _vjp_log10, _h("_log10"), "{_log10}({0})", "np.log10",
           lambda a: _sym().log(a) / _sym().log(10),
           domain=lambda a: a > 0),
    _unary("tanh", _vjp_tanh, math.tanh, "{math}.tanh({0})", "np.tanh",
           lambda a: _sym().tanh(a), mp=lambda a: _mpmath().tanh(a)),
    _unary("sinh", _vjp_sinh, _h("_sinh"), "{_sinh}({0})", "np.sinh",
           lambda a: _sym().sinh(a), mp=lambda a: _mpmath().sinh(a)),
    _unary("cosh", _vjp_cosh, _h("_cosh"), "{_cosh}({0})", "np.cosh",
           lambda a: _sym().cosh(a), mp=lambda a: _mpmath().cosh(a)),
    _unary("sigmoid", _vjp_sigmoid, _h("_sigmoid"), "{_sigmoid}({0})",
           "np.exp(-np.logaddexp(0.0, -{0}))", lambda a: 1 / (1 + _sym().exp(-a))),
    _unary("relu", _vjp_relu, lambda a: 0.0 if a <= 0.0 else a, "0.0 if {0} <= 0.0 else {0}",
           "np.where({0} <= 0.0, 0.0, {0})", lambda a: _sym().Max(0, a),
           kink=0.0),
    _unary("sin", _vjp_sin, _h("_sin"), "{_sin}({0})", "np.sin", lambda a: _sym().sin(a),
           mp=lambda a: _mpmath().sin(a)),
    _unary("cos", _vjp_cos, _h("_cos"), "{_cos}({0})", "np.cos", lambda a: _sym().cos(a),
           mp=lambda a: _mpmath().cos(a)),
    _unary("atan", _vjp_atan, math.atan, "{math}.atan({0})", "np.arctan",
           lambda a: _sym().atan(a), mp=lambda a: _mpmath().atan(a)),
    _unary("asin", _vjp_asin, _h("_asin"), "{_asin}({0})", "np.arcsin",
           lambda a: _sym().asin(a), mp=lambda a: _mpmath().asin(a),
           domain=lambda a: -1 < a < 1),
    _unary("acos", _vjp_acos, _h("_acos"), "{_acos}({0})", "np.arccos",
           lambda a: _sym().acos(a), mp=lambda a: _mpmath().acos(a),
           domain=lambda a: -1 < a < 1),
    _unary("sqrt", _vjp_sqrt, _h("_sqrt"), "{_sqrt}({0})", "np.sqrt",
           lambda a: _sym().sqrt(a),
           domain=lambda a: a > 0),
    _unary("abs", _vjp_abs, abs, "abs({0})", "np.abs", lambda a: _sym().Abs(a), mp=abs,
           kink=0.0),
    _unary("softplus", _vjp_softplus, _h("_softplus"), "{_softplus}({0})",
           "np.logaddexp(0.0, {0})", lambda a: _sym().log(1 + _sym().exp(a))),
    _unary("step", _vjp_none, lambda a: 1.0 if a > 0.0 else 0.0, "1.0 if {0} > 0.0 else 0.0",
           "np.asarray({0} > 0.0, {dtype})", lambda a: _sym().Heaviside(a, 0),
           mp=lambda a, h0=None: _heaviside(a, h0),
           kink=0.0),
    _unary("sign", _vjp_none, _ref_sign,
           "1.0 if {0} > 0.0 else (-1.0 if {0} < 0.0 else 0.0 * {0})", "np.sign",
           lambda a: _sym().sign(a), mp=lambda a: _mpmath().sign(a), kink=0.0),
    _tensor("sum", 1, _sum_shape, _vjp_sum, _sum_unroll, _np_sum, "sum", builtin="sum",
            np_view=True),
    _tensor("dot", 2, _dot_shape, _vjp_dot, _dot_unroll, _np_dot, "dot", builtin="dot"),
    # numpy: written by exprgrad.emit.arrays as a block (max once, exponentials shared with the
    # gradient)
    _tensor("logsumexp", 1, _shape_lse, _vjp_lse, _unroll_lse, None, "", builtin="logsumexp"),
    _tensor("matmul", 2, _matmul_shape, _vjp_matmul, _matmul_unroll,
            _MATMUL_NP[0], "matmul multiply dot", label="@", np_into=_MATMUL_NP[1]),
    _tensor("transpose", 1, _transpose_shape, _vjp_transpose, _transpose_unroll,
            _np_transpose, "swapaxes", builtin="transpose", simplify=_simp_transpose,
            np_view=True),
    _tensor("outer", 2, _outer_shape, _vjp_outer, _outer_unroll,
            _np_outer, "", builtin="outer"),
    _tensor("stack", None, _stack_shape, _vjp_stack, _stack_unroll, _np_stack,
            "stack broadcast_to", label="[...]", np_view=True),
    _tensor("index", 1, _index_shape, _vjp_index, _index_unroll, _np_index, "",
            simplify=_simp_index, label="[i]", np_view=True),
    _tensor("scatter", 1, _scatter_shape, _vjp_scatter, _scatter_unroll, _np_scatter,
            "stack zeros_like", label="scatter", np_view=True),
    _tensor("broadcast", 1, _broadcast_shape, _vjp_broadcast, _broadcast_unroll, _np_broadcast,
            "broadcast_to", simplify=_simp_broadcast, label="broadcast", np_view=True),
)

#: builtin function name in the language -> op name
BUILTINS: dict[str, str] = {s.builtin: s.name for s in OPS.values() if s.builtin}
