"""Metamorphic tests of both code generators: renaming identifiers or reordering independent
declarations never changes a value or a gradient.

A random program (parameters, networks, functions with scalar, vector and matrix arguments,
locals, calls of earlier functions, a custom derivative rule) is written once with plain names
and once with a renaming drawn from a deliberately hostile pool: Python builtins, the names the
generated modules use themselves (``B``, ``p``, ``np``, ``params``, ``t7``, ``onesB``, ...) and
names built from the program's other names (``w_0`` beside ``param w[2]``, ``n_w`` beside
``net n``, ``t1`` + a counter, ``f_grad_sum`` beside ``def f``). Names exprgrad's frontend refuses
in a role are never drawn for it. For each version and each backend (scalar Python and numpy) the
values and gradients are observed, keyed by the *original* names, and

- the renamed program must give the same numbers as the original (1e-12 relative), per backend;
- reordering the ``param``/``net`` declarations (and independent ``def``s) changes nothing
  either (1e-12 relative; parameters are fed and compared by name);
- the two backends agree (1e-9 relative), the values returned by ``f`` and ``f_grad`` agree, the
  scalar ``f_grad_sum`` equals the sum of ``f_grad`` over the batch;
- the scalar gradient of the original agrees with central finite differences.

Generated functions are looked up only with :func:`exprgrad.api.entry_point`.

The same machinery drives ``scripts/fuzz_metamorphic.py``, which runs thousands of cases with a
plain random generator and groups the failures. Here hypothesis runs a bounded number of
derandomized examples; pick another profile with ``EXPRGRAD_METAMORPHIC_PROFILE`` (``ci``,
``dev``, ``thorough``).
"""

from __future__ import annotations

import builtins
import functools
import keyword
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, note, reject, settings
from hypothesis import strategies as st

from exprgrad.api import compile_program, entry_point, module_from_code
from exprgrad.emit.arrays import generate_numpy
from exprgrad.emit.scalar import generate
from exprgrad.errors import ExprgradError, ExprgradNameError
from exprgrad.ir.program import Program

# ---- settings profiles ----------------------------------------------------------------------

_COMMON: dict[str, Any] = dict(deadline=None, print_blob=True,
                               suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.data_too_large,
                                                      HealthCheck.filter_too_much])
#: CI: derandomized, and no hypothesis shrinking (its shrinker can spend its full five minutes on
#: these cases); a failure is shrunk greedily instead, for at most GREEDY_SHRINK_SECONDS
settings.register_profile("metamorphic-ci", max_examples=80, derandomize=True, database=None,
                          phases=[Phase.explicit, Phase.generate], **_COMMON)
settings.register_profile("metamorphic-dev", max_examples=300, **_COMMON)
settings.register_profile("metamorphic-thorough", max_examples=3000, **_COMMON)
PROFILE = "metamorphic-" + os.environ.get("EXPRGRAD_METAMORPHIC_PROFILE", "ci")
GREEDY_SHRINK_SECONDS = 15.0

#: examples per batch (numpy backend) and per scalar function
BATCH = 3


# ---- drawing: one generator for hypothesis and for plain random numbers ----------------------


class Drawer:
    """The choices the generator makes. Subclasses draw from hypothesis (shrinkable: every
    choice shrinks toward its first option, the plain one) or from :class:`random.Random`."""

    def int(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def pick(self, options: Sequence[Any], weights: Sequence[float] | None = None) -> Any:
        raise NotImplementedError

    def chance(self, p: float) -> bool:
        raise NotImplementedError


class HypothesisDrawer(Drawer):
    def __init__(self, draw: Callable[[Any], Any]) -> None:
        self.draw = draw

    def int(self, lo: int, hi: int) -> int:
        return int(self.draw(st.integers(lo, hi)))

    def pick(self, options: Sequence[Any], weights: Sequence[float] | None = None) -> Any:
        return options[self.int(0, len(options) - 1)]

    def chance(self, p: float) -> bool:  # shrinks toward False
        return self.int(0, 999) >= 1000 - round(p * 1000)


class RandomDrawer(Drawer):
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, options: Sequence[Any], weights: Sequence[float] | None = None) -> Any:
        return self.rng.choices(list(options), weights=weights)[0]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


# ---- the program model ------------------------------------------------------------------------
# Expressions are tuples; ("var", sym) and ("call", sym, args) name symbols, which a naming maps
# to text. Symbols are the plain (canonical) names: fa fb .. functions, pa pb .. parameters,
# na nb .. networks, and per function xa xb .. arguments and va vb .. locals: letters only, so
# that none of them clashes with a name generated code uses or derives.

Shape = tuple[int, ...]
Expr = tuple[Any, ...]


@dataclass
class Decl:
    kind: str  # "param" | "net"
    sym: str
    shape: Shape = ()  # a parameter's shape; a network's output shape
    init: str = ""  # a parameter's initializer; a network's constructor text (after '=')
    nin: int = 0
    bound: float = 1.0  # the largest magnitude of a value (a network's, for inputs up to 3)


@dataclass
class Def:
    sym: str
    args: list[tuple[str, Shape]]
    body: list[tuple[Any, ...]]  # ("assign", sym, expr, augop | None) | ("grad", sym, expr)
    returns: list[Expr]
    ret_shapes: list[Shape]
    calls: set[str] = field(default_factory=set)
    bound: float = 1.0  # of the first output, for arguments up to ARG_BOUND

    def local_syms(self) -> list[str]:
        seen = [a for a, _ in self.args]
        for stmt in self.body:
            if stmt[0] == "assign" and stmt[1] not in seen:
                seen.append(stmt[1])
        return seen


@dataclass
class Model:
    decls: list[Decl]
    defs: list[Def]


FUNC_SYMS = ["fa", "fb", "fc", "fd", "fe"]
PARAM_SYMS = ["pa", "pb", "pc", "pd", "pe", "pf"]
NET_SYMS = ["na", "nb", "nc"]
ARG_SYMS = ["xa", "xb", "xc", "xd"]
LOCAL_SYMS = ["va", "vb", "vc", "vd"]

NUMBERS = ["0.5", "1", "2", "0.25", "1.5", "3", "0.75"]
UNARY = ["tanh", "sigmoid", "sin", "cos", "softplus", "exp"]
ACTS = ["tanh", "sigmoid", "linear"]  # relu has a kink: finite differences could straddle it

#: Every value stays below LIMIT in magnitude (an operand that could push a result past it is
#: squashed with tanh), exp's argument below 3, and arguments of calls below ARG_BOUND, so that
#: no result is ill-conditioned: rounding differences between the backends (1e-16 relative)
#: must not grow past the 1e-9 they are compared with, nor finite differences lose their digits.
LIMIT = 1000.0
ARG_BOUND = 3.0

Bounded = tuple[Expr, float]  # an expression and a bound on the magnitude of its value


def _squash(eb: Bounded, limit: float) -> Bounded:
    return eb if eb[1] <= limit else (("call", "tanh", [eb[0]]), 1.0)


def _product(a: Bounded, b: Bounded, limit: float = LIMIT) -> tuple[Bounded, Bounded]:
    """Operands whose product stays within ``limit`` (the larger squashed first)."""
    if a[1] * b[1] > limit:
        if a[1] >= b[1]:
            a = _squash(a, 0.0)
        else:
            b = _squash(b, 0.0)
    if a[1] * b[1] > limit:
        a, b = _squash(a, 0.0), _squash(b, 0.0)
    return a, b


def _net_bound(nin: int, sizes: list[int], act: str, out: str) -> float:
    x = ARG_BOUND
    for i in range(len(sizes)):
        layer_act = out if i == len(sizes) - 1 else act
        pre = (sizes[i - 1] if i else nin) * x + 1.0  # weights and biases in [-1, 1]
        x = pre if layer_act == "linear" else 1.0
    return x


class _Gen:
    """Builds a random, valid, smooth, well-conditioned program (see docs/language.md)."""

    def __init__(self, d: Drawer) -> None:
        self.d = d

    # ---- declarations -----------------------------------------------------------------
    def decls(self) -> list[Decl]:
        d = self.d
        out: list[Decl] = []
        n_params = d.int(0, 4)
        n_nets = d.pick([0, 1, 2], [4, 5, 1])
        kinds = ["param"] * n_params + ["net"] * n_nets
        order = [kinds.pop(d.int(0, len(kinds) - 1)) for _ in range(len(kinds))]
        pi = ni = 0
        for kind in order:
            if kind == "param":
                out.append(self.param(PARAM_SYMS[pi]))
                pi += 1
            else:
                out.append(self.net(NET_SYMS[ni]))
                ni += 1
        return out

    def param(self, sym: str) -> Decl:
        d = self.d
        shape: Shape = d.pick([(), (1,), (2,), (3,), (2, 2), (1, 2), (2, 3), (3, 1)],
                              [5, 1, 3, 2, 2, 1, 1, 1])
        size = math.prod(shape)
        if d.chance(0.5):
            init = "uniform(-1, 1)"
        elif d.chance(0.3) or shape == ():
            init = d.pick(["0.5", "-0.25", "1", "-1.5", "0.75"])
        elif len(shape) == 1:
            init = "[" + ", ".join(d.pick(["0.5", "-0.25", "1", "2", "-1"])
                                   for _ in range(size)) + "]"
        else:
            init = "[" + ", ".join("[" + ", ".join(d.pick(["0.5", "-0.25", "1", "-1"])
                                                   for _ in range(shape[1])) + "]"
                                   for _ in range(shape[0])) + "]"
        return Decl("param", sym, shape, init, bound=2.0)

    def net(self, sym: str) -> Decl:
        d = self.d
        kind = d.pick(["Neuron", "Layer", "MLP"], [3, 3, 2])
        nin = d.int(1, 3)
        act = d.pick(ACTS)
        opts = "" if act == "tanh" and d.chance(0.5) else f", act={act}"
        if kind == "Neuron":
            return Decl("net", sym, (), f"Neuron({nin}{opts})", nin,
                        _net_bound(nin, [1], act, act))
        if kind == "Layer":
            nout = d.int(1, 3)
            return Decl("net", sym, () if nout == 1 else (nout,),
                        f"Layer({nin}, {nout}{opts})", nin, _net_bound(nin, [nout], act, act))
        hidden, nout = d.int(1, 3), d.int(1, 2)
        out = act
        if d.chance(0.4):
            out = d.pick(ACTS)
            opts += f", out={out}"
        return Decl("net", sym, () if nout == 1 else (nout,),
                    f"MLP({nin}, [{hidden}, {nout}]{opts})", nin,
                    _net_bound(nin, [hidden, nout], act, out))

    # ---- definitions ------------------------------------------------------------------
    def defs(self, decls: list[Decl]) -> list[Def]:
        d = self.d
        out: list[Def] = []
        for i in range(d.pick([1, 2, 3, 4], [3, 4, 3, 1])):
            sym = FUNC_SYMS[i]
            if d.chance(0.12):
                out.append(self.custom_rule_def(sym))
            else:
                out.append(self.plain_def(sym, decls, out))
        return out

    def custom_rule_def(self, sym: str) -> Def:
        """tanh(a) * b with a correct hand-written rule; its body names are visible in rules."""
        a, b, t = ("var", "xa"), ("var", "xb"), ("var", "va")
        body = [
            ("assign", "va", ("call", "tanh", [a]), None),
            ("grad", "xa", ("bin", "*", ("bin", "*", ("bin", "-", ("num", "1"),
                                                        ("bin", "**", t, ("num", "2"))), b),
                            ("var", "dout"))),
            ("grad", "xb", ("bin", "*", t, ("var", "dout"))),
        ]
        return Def(sym, [("xa", ()), ("xb", ())], body, [("bin", "*", t, b)], [()],
                   bound=ARG_BOUND)

    def plain_def(self, sym: str, decls: list[Decl], earlier: list[Def]) -> Def:
        d = self.d
        n_args = d.pick([0, 1, 2, 3], [1, 5, 5, 2])
        args: list[tuple[str, Shape]] = []
        for j in range(n_args):
            shape: Shape = d.pick([(), (1,), (2,), (3,), (2, 2), (2, 3)], [6, 1, 3, 2, 1, 1])
            args.append((ARG_SYMS[j], shape))
        scope = _Scope(self.d, decls, [f for f in earlier if len(f.returns) == 1])
        for a, shape in args:
            scope.vars[a] = (shape, ARG_BOUND)
        body: list[tuple[Any, ...]] = []
        n_locals = 0
        for _ in range(d.pick([0, 1, 2, 3], [3, 4, 3, 2])):
            mine = [s for s in scope.vars if s.startswith("v")]
            if mine and d.chance(0.35):
                target = d.pick(mine)
                shape, bound = scope.vars[target]
                aug = d.pick([None, "+", "-", "*"])
            else:
                if n_locals == len(LOCAL_SYMS):
                    break
                target, shape = LOCAL_SYMS[n_locals], d.pick([(), (2,), (3,)], [3, 1, 1])
                bound, aug = 0.0, None
                n_locals += 1
            eb = scope.expr(shape, d.int(1, 3))
            if aug == "*":
                _, eb = _product((("var", target), bound), eb)
                bound *= eb[1]
            elif aug:
                bound += eb[1]
            else:
                bound = eb[1]
            body.append(("assign", target, eb[0], aug))
            scope.vars[target] = (shape, bound)
        if d.chance(0.15):
            shapes: list[Shape] = [(), d.pick([(), (2,)])]
        else:
            shapes = [d.pick([(), (2,), (3,)], [8, 1, 1])]
        returns = [scope.expr(s, d.int(1, 3)) for s in shapes]
        mine = [s for s in scope.vars if s.startswith("v")]
        if mine and d.chance(0.7):  # mostly, the result uses the locals
            var = d.pick(mine)
            vshape, vbound = scope.vars[var]
            use: Bounded = (("var", var), vbound)
            if vshape != shapes[0] and shapes[0] == ():
                use = (("call", "sum", [use[0]]), vbound * vshape[0])
            if vshape == shapes[0] or shapes[0] == ():
                op = d.pick(["+", "*", "-"])
                if op == "*":
                    use, first = _product(use, returns[0])
                    returns[0] = (("bin", op, use[0], first[0]), use[1] * first[1])
                else:
                    returns[0] = (("bin", op, use[0], returns[0][0]), use[1] + returns[0][1])
        return Def(sym, args, body, [r for r, _ in returns], shapes, scope.calls,
                   returns[0][1])


class _Scope:
    """What an expression in one def may use, and a typed generator of smooth expressions
    whose magnitudes stay bounded (see LIMIT)."""

    def __init__(self, d: Drawer, decls: list[Decl], funcs: list[Def]) -> None:
        self.d = d
        self.vars: dict[str, tuple[Shape, float]] = {p.sym: (p.shape, p.bound) for p in decls
                                                     if p.kind == "param"}
        self.nets = [n for n in decls if n.kind == "net"]
        self.funcs = funcs
        self.calls: set[str] = set()

    def of_shape(self, shape: Shape) -> list[str]:
        return [s for s, (sh, _) in self.vars.items() if sh == shape]

    def expr(self, shape: Shape, depth: int) -> Bounded:
        if shape == ():
            return self.scalar(depth)
        if len(shape) == 1:
            return self.vector(shape[0], depth)
        raise AssertionError(shape)

    def unary(self, arg: Bounded) -> Bounded:
        fn = self.d.pick(UNARY)
        if fn == "exp":
            arg = _squash(arg, 3.0)
            return ("call", fn, [arg[0]]), math.exp(arg[1])
        if fn == "softplus":
            return ("call", fn, [arg[0]]), arg[1] + 1.0
        return ("call", fn, [arg[0]]), 1.0

    def binary(self, a: Bounded, b: Bounded) -> Bounded:
        op = self.d.pick(["+", "-", "*"])
        if op == "*":
            a, b = _product(a, b)
            return ("bin", op, a[0], b[0]), a[1] * b[1]
        return ("bin", op, a[0], b[0]), a[1] + b[1]

    def scalar(self, depth: int) -> Bounded:
        d = self.d
        leaves: list[tuple[str, float]] = [("num", 1)]
        if self.of_shape(()):
            leaves.append(("var", 6))
        if any(len(sh) >= 1 for sh, _ in self.vars.values()):
            leaves.append(("index", 4))
        if depth <= 0:
            kind = d.pick([k for k, _ in leaves], [w for _, w in leaves])
        else:
            options = leaves + [("bin", 6), ("unary", 3), ("div", 1), ("pow", 1), ("vpow", 1),
                                ("domain", 1), ("neg", 1), ("reduce", 2), ("vindex", 1)]
            if any(n.shape == () for n in self.nets):
                options.append(("net", 3))
            if any(f.ret_shapes[0] == () for f in self.funcs):
                options.append(("call", 3))
            kind = d.pick([k for k, _ in options], [w for _, w in options])
        sub = depth - 1
        if kind == "num":
            text = d.pick(NUMBERS)
            return ("num", text), float(text)
        if kind == "var":
            sym = d.pick(self.of_shape(()))
            return ("var", sym), self.vars[sym][1]
        if kind == "index":
            sym = d.pick([s for s, (sh, _) in self.vars.items() if len(sh) >= 1])
            sh, bound = self.vars[sym]
            idx = [d.int(0, n - 1) for n in sh]
            if d.chance(0.2):
                idx[0] -= sh[0]  # a negative index counts from the end
            return ("index", ("var", sym), idx), bound
        if kind == "bin":
            return self.binary(self.scalar(sub), self.scalar(sub))
        if kind == "unary":
            return self.unary(self.scalar(sub))
        if kind == "div":  # a denominator that stays away from zero
            num, den = self.scalar(sub), _squash(self.scalar(sub), 30.0)
            return ("bin", "/", num[0], ("bin", "+", ("num", "1"),
                                         ("bin", "**", den[0], ("num", "2")))), num[1]
        if kind == "pow":
            k = d.pick([2, 3])
            base = _squash(self.scalar(sub), LIMIT ** (1 / k))
            return ("bin", "**", base[0], ("num", str(k))), base[1] ** k
        if kind == "vpow":  # a variable exponent of a positive base (the _pow helper)
            base = ("bin", "+", ("num", "1"), ("call", "sigmoid", [self.scalar(sub)[0]]))
            return ("bin", "**", base, ("call", "tanh", [self.scalar(sub)[0]])), 2.0
        if kind == "domain":
            x = _squash(self.scalar(sub), 30.0)
            inner = ("bin", "+", ("num", "1"), ("bin", "**", x[0], ("num", "2")))
            return ("call", d.pick(["sqrt", "log", "log1p"]), [inner]), 1.0 + x[1] ** 2
        if kind == "neg":
            e, bound = self.scalar(sub)
            return ("neg", e), bound
        if kind == "reduce":
            n = d.int(1, 3)
            how = d.pick(["sum", "dot", "logsumexp", "outer"], [3, 2, 1, 1])
            if how in ("dot", "outer"):
                m = n if how == "dot" else d.int(1, 2)
                u, v = self.vector(n, sub), self.vector(m, sub)
                u, v = _product(u, v, LIMIT / (n * m))
                if how == "dot":
                    return ("call", "dot", [u[0], v[0]]), n * u[1] * v[1]
                return ("call", "sum", [("call", "outer", [u[0], v[0]])]), n * m * u[1] * v[1]
            v = self.vector(n, sub)
            if how == "sum":
                v = _squash(v, LIMIT / n)
                return ("call", "sum", [v[0]]), n * v[1]
            return ("call", "logsumexp", [v[0]]), v[1] + math.log(n)
        if kind == "vindex":
            n = d.int(1, 3)
            v, bound = self.vector(n, sub)
            return ("index", ("paren", v), [d.int(0, n - 1)]), bound
        if kind == "net":
            return self.net([x for x in self.nets if x.shape == ()], sub)
        if kind == "call":
            return self.call([f for f in self.funcs if f.ret_shapes[0] == ()], sub)
        raise AssertionError(kind)

    def net(self, nets: list[Decl], depth: int) -> Bounded:
        net = self.d.pick(nets)
        x = _squash(self.vector(net.nin, depth), ARG_BOUND)
        return ("call", net.sym, [x[0]]), net.bound

    def call(self, funcs: list[Def], depth: int) -> Bounded:
        f = self.d.pick(funcs)
        self.calls.add(f.sym)
        args = []
        for _, shape in f.args:
            if len(shape) == 2:
                mats = self.of_shape(shape)
                if mats:
                    args.append(("var", self.d.pick(mats)))
                else:  # a matrix display
                    args.append(("list", [self.vector(shape[1], 0)[0] for _ in range(shape[0])]))
            else:
                args.append(_squash(self.expr(shape, depth), ARG_BOUND)[0])
        return ("call", f.sym, args), f.bound

    def vector(self, n: int, depth: int) -> Bounded:
        d = self.d
        options: list[tuple[str, float]] = [("list", 2)]
        if self.of_shape((n,)):
            options.append(("var", 6))
        mats = [s for s, (sh, _) in self.vars.items() if len(sh) == 2]
        if depth > 0:
            options += [("ebin", 4), ("scale", 2), ("unary", 2)]
            if any(self.vars[s][0][0] == n for s in mats):
                options.append(("matvec", 3))
            if any(self.vars[s][0][1] == n for s in mats):
                options.append(("tmatvec", 2))
            if any(net.shape == (n,) for net in self.nets):
                options.append(("net", 3))
            if any(f.ret_shapes[0] == (n,) for f in self.funcs):
                options.append(("call", 2))
        kind = d.pick([k for k, _ in options], [w for _, w in options])
        sub = depth - 1
        if kind == "list":
            items = [self.scalar(min(depth, 1)) for _ in range(n)]
            return ("list", [e for e, _ in items]), max(b for _, b in items)
        if kind == "var":
            sym = d.pick(self.of_shape((n,)))
            return ("var", sym), self.vars[sym][1]
        if kind == "ebin":
            return self.binary(self.vector(n, sub), self.vector(n, sub))
        if kind == "scale":
            s, v = _product(self.scalar(sub), self.vector(n, sub))
            bound = s[1] * v[1]
            return (("bin", "*", s[0], v[0]) if d.chance(0.5) else ("bin", "*", v[0], s[0])), bound
        if kind == "unary":
            return self.unary(self.vector(n, sub))
        if kind == "matvec":
            sym = d.pick([s for s in mats if self.vars[s][0][0] == n])
            (_, k), mb = self.vars[sym]
            v = _squash(self.vector(k, sub), LIMIT / (k * mb))
            return ("bin", "@", ("var", sym), v[0]), k * mb * v[1]
        if kind == "tmatvec":  # v @ M, or transpose(M) @ v
            sym = d.pick([s for s in mats if self.vars[s][0][1] == n])
            (k, _), mb = self.vars[sym]
            v = _squash(self.vector(k, sub), LIMIT / (k * mb))
            if d.chance(0.5):
                return ("bin", "@", v[0], ("var", sym)), k * mb * v[1]
            return ("bin", "@", ("call", "transpose", [("var", sym)]), v[0]), k * mb * v[1]
        if kind == "net":
            return self.net([x for x in self.nets if x.shape == (n,)], sub)
        if kind == "call":
            return self.call([f for f in self.funcs if f.ret_shapes[0] == (n,)], sub)
        raise AssertionError(kind)


def draw_model(d: Drawer) -> Model:
    g = _Gen(d)
    decls = g.decls()
    return Model(decls, g.defs(decls))


# ---- rendering --------------------------------------------------------------------------------


@dataclass
class Naming:
    """Symbol -> name: one map for the global names, one per def for its arguments and locals."""

    globals: dict[str, str]
    locals: list[dict[str, str]]

    @staticmethod
    def plain(model: Model) -> Naming:
        g = {x.sym: x.sym for x in model.decls} | {f.sym: f.sym for f in model.defs}
        return Naming(g, [{s: s for s in f.local_syms()} for f in model.defs])


def _render_expr(e: Expr, name: Callable[[str], str]) -> str:
    kind = e[0]
    if kind == "num":
        return str(e[1])
    if kind == "var":
        return name(e[1])
    if kind == "bin":
        return f"({_render_expr(e[2], name)} {e[1]} {_render_expr(e[3], name)})"
    if kind == "neg":
        return f"(-{_render_expr(e[1], name)})"
    if kind == "paren":
        return f"({_render_expr(e[1], name)})"
    if kind == "call":
        return f"{name(e[1])}({', '.join(_render_expr(a, name) for a in e[2])})"
    if kind == "index":
        return f"{_render_expr(e[1], name)}[{', '.join(map(str, e[2]))}]"
    if kind == "list":
        return "[" + ", ".join(_render_expr(a, name) for a in e[1]) + "]"
    raise AssertionError(kind)


def _shape_text(shape: Shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]" if shape else ""


def render(model: Model, naming: Naming, decl_order: Sequence[int] | None = None,
           def_order: Sequence[int] | None = None) -> str:
    lines: list[str] = []
    for i in decl_order if decl_order is not None else range(len(model.decls)):
        x = model.decls[i]
        name = naming.globals[x.sym]
        if x.kind == "param":
            lines.append(f"param {name}{_shape_text(x.shape)} = {x.init}")
        else:
            lines.append(f"net {name} = {x.init}")
    for i in def_order if def_order is not None else range(len(model.defs)):
        f, local = model.defs[i], naming.locals[i]

        def name(sym: str, local: dict[str, str] = local) -> str:
            return local.get(sym) or naming.globals.get(sym) or sym  # builtins, dout

        args = ", ".join(local[a] + _shape_text(s) for a, s in f.args)
        lines.append(f"def {naming.globals[f.sym]}({args}):")
        for stmt in f.body:
            if stmt[0] == "assign":
                op = f"{stmt[3]}=" if stmt[3] else "="
                lines.append(f"    {local[stmt[1]]} {op} {_render_expr(stmt[2], name)}")
            else:
                lines.append(f"    grad {local[stmt[1]]} = {_render_expr(stmt[2], name)}")
        lines.append("    return " + ", ".join(_render_expr(r, name) for r in f.returns))
    return "\n".join(lines) + "\n"


# ---- hostile names ----------------------------------------------------------------------------

#: names generated modules use, or derive from user names, or that read as their parts
SPECIAL_NAMES = [
    "B", "p", "g", "np", "math", "random", "params", "rng", "seed", "t", "t1", "t2", "t3", "t5",
    "t7", "t9", "t12", "t15", "t23", "w", "w_0", "w_1", "w_1_0", "w_0_1", "w9", "n", "n_w",
    "n_b", "n_layers_0_w", "onesB", "ones1", "ones2", "ones3", "BACKEND", "PARAM_NAMES",
    "PARAM_SHAPES", "FUNCTIONS", "SOURCE", "SOURCE_SHA256", "EXPRGRAD_VERSION", "ENTRY_POINTS",
    "ENTRY_KINDS", "init_params", "x", "y", "x_0", "x_1", "dx", "d", "div", "pow", "dw3", "sum7",
    "gsum8", "max3", "exp4", "sumexp5", "module", "self", "numpy", "grad_sum", "value", "hess",
    "zip", "isinstance", "len", "float", "list", "abs", "max", "complex", "range", "tuple",
    "int", "print", "type", "object", "sum",
]
#: every public name of Python's builtins module
BUILTIN_NAMES = sorted(n for n in dir(builtins) if not n.startswith("_") and n.isidentifier()
                       and not keyword.iskeyword(n))
#: suffixes appended to another symbol's new name (element names, counters, generated names)
SUFFIXES = ["_0", "_1", "_0_0", "_1_0", "_0_1", "_w", "_b", "_layers_0_w", "_layers_0_b",
            "_grad_sum", "_sum", "_grad", "_hess", "_", "_2", "1", "2", "3", "5", "9", "12"]

_PROBES = {
    "func": "def {n}(qzq):\n    return qzq\n",
    "arg": "def fzq({n}):\n    return {n}\n",
    "local": "def fzq(qzq):\n    {n} = qzq\n    return {n}\n",
    "param": "param {n} = 1\ndef fzq(qzq):\n    return {n} * qzq\n",
    "net": "net {n} = Neuron(1)\ndef fzq(qzq[1]):\n    return {n}(qzq)\n",
}


@functools.cache
def accepted(role: str, name: str) -> bool:
    """Whether the frontend takes ``name`` in this role (tried, not assumed)."""
    if not name.isidentifier() or keyword.iskeyword(name):
        return False
    try:
        compile_program(_PROBES[role].format(n=name), "<probe>")
    except ExprgradError:
        return False
    return True


def _role(sym: str) -> str:
    return {"f": "func", "p": "param", "n": "net", "x": "arg", "v": "local"}[sym[0]]


def draw_naming(d: Drawer, model: Model) -> Naming:
    """A consistent renaming: global names pairwise distinct; each def's arguments and locals
    pairwise distinct and distinct from every global name. Every choice shrinks toward keeping
    the plain name."""
    every = [x.sym for x in model.decls] + [f.sym for f in model.defs]
    every += sorted({s for f in model.defs for s in f.local_syms()})
    gmap: dict[str, str] = {}
    funcs: list[str] = []
    for sym in [x.sym for x in model.decls] + [f.sym for f in model.defs]:
        name = _draw_name(d, sym, list(gmap.values()), set(gmap.values()), every,
                          funcs if sym[0] == "f" else None)
        gmap[sym] = name
        if sym[0] == "f":
            funcs.append(name)
    lmaps = []
    for f in model.defs:
        lmap: dict[str, str] = {}
        for sym in f.local_syms():
            drawn = list(gmap.values()) + list(lmap.values())
            lmap[sym] = _draw_name(d, sym, drawn, set(drawn), every, None)
        lmaps.append(lmap)
    return Naming(gmap, lmaps)


def _draw_name(d: Drawer, sym: str, earlier: list[str], used: set[str], every: list[str],
               funcs: list[str] | None) -> str:
    how = d.pick(["keep", "special", "builtin", "derived", "swap"], [30, 30, 10, 25, 5])
    name = sym
    if how == "special":
        name = d.pick(SPECIAL_NAMES)
    elif how == "builtin":
        name = d.pick(BUILTIN_NAMES)
    elif how == "derived" and earlier:
        base = d.pick(earlier)
        change = d.pick(["suffix", "strip", "d"], [6, 2, 1])
        if change == "suffix":
            name = base + d.pick(SUFFIXES)
        elif change == "strip" and "_" in base.strip("_"):
            name = base.rsplit("_", 1)[0]
        elif change == "d":
            name = "d" + base
    elif how == "swap":
        name = d.pick(every)
    role = _role(sym)
    if not _usable(name, role, used, funcs):
        name = sym
    while not _usable(name, role, used, funcs):
        name += "z"
    return name


def _usable(name: str, role: str, used: set[str], funcs: list[str] | None) -> bool:
    if name in used or not accepted(role, name):
        return False
    if funcs is not None:  # f beside f_grad / f_hess is refused by the frontend (documented)
        for other in funcs:
            for suffix in ("_grad", "_hess"):
                if name == other + suffix or other == name + suffix:
                    return False
    return True


def draw_order(d: Drawer, model: Model) -> tuple[list[int], list[int]]:
    """A permutation of the declarations, and an order of the defs that keeps each def after
    the defs it calls."""
    rest = list(range(len(model.decls)))
    decls = [rest.pop(d.int(0, len(rest) - 1)) for _ in range(len(rest))]
    by_sym = {f.sym: i for i, f in enumerate(model.defs)}
    placed: list[int] = []
    while len(placed) < len(model.defs):
        ready = [i for i, f in enumerate(model.defs) if i not in placed
                 and all(by_sym[c] in placed for c in f.calls)]
        placed.append(ready[d.int(0, len(ready) - 1)])
    return decls, placed


# ---- cases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """Two versions of one program. ``renaming`` maps the original's global names (functions,
    parameters, networks) to the variant's; arguments are matched by position. ``spec`` (when
    the case was generated) is what it was made from, for shrinking."""

    original: str
    variant: str
    renaming: tuple[tuple[str, str], ...] = ()
    kind: str = "rename"  # or "reorder" (which compares with a little float slack)
    seed: int = 0
    spec: Spec | None = field(default=None, init=False, compare=False, repr=False)

    def __repr__(self) -> str:
        moved = ", ".join(f"{a}->{b}" for a, b in self.renaming if a != b)
        return (f"Case(kind={self.kind!r}, seed={self.seed}, renaming={{{moved}}})\n"
                f"--- original ---\n{self.original}--- {self.kind}d ---\n{self.variant}")


@dataclass
class Spec:
    """What a generated case is made from: the program model, the variant's naming and (for a
    reordering) the variant's order of declarations and defs."""

    kind: str
    model: Model
    naming: Naming
    decl_order: list[int]
    def_order: list[int]
    seed: int

    def case(self) -> Case:
        plain = Naming.plain(self.model)
        original = render(self.model, plain)
        if self.kind == "rename":
            variant = render(self.model, self.naming)
        else:
            variant = render(self.model, plain, self.decl_order, self.def_order)
        case = Case(original, variant, tuple(self.naming.globals.items()), self.kind, self.seed)
        object.__setattr__(case, "spec", self)
        return case


def draw_spec(kind: str, d: Drawer) -> Spec:
    model = draw_model(d)
    if kind == "rename":
        naming = draw_naming(d, model)
        decls, defs = list(range(len(model.decls))), list(range(len(model.defs)))
    else:
        naming = Naming.plain(model)
        decls, defs = draw_order(d, model)
    return Spec(kind, model, naming, decls, defs, d.int(0, 2**16))


@st.composite
def rename_cases(draw: Callable[[Any], Any]) -> Case:
    return draw_spec("rename", HypothesisDrawer(draw)).case()


@st.composite
def reorder_cases(draw: Callable[[Any], Any]) -> Case:
    return draw_spec("reorder", HypothesisDrawer(draw)).case()


# ---- checking ---------------------------------------------------------------------------------


class MetamorphicFailure(AssertionError):
    """A property failed. Subclasses name which one (hypothesis tells distinct types apart)."""

    what = "failure"

    def __init__(self, detail: str, case: Case | None = None) -> None:
        self.detail = detail
        super().__init__(f"{self.what}: {detail}" + (f"\n{case!r}" if case else ""))


class GeneratorBug(MetamorphicFailure):
    what = "the test's generator wrote an invalid original program"


class GeneratedCodeRaised(MetamorphicFailure):
    what = "generating, loading or calling generated code raised"


class RenameMismatch(MetamorphicFailure):
    what = "renaming changed a result"


class ReorderMismatch(MetamorphicFailure):
    what = "reordering independent statements changed a result"


class BackendMismatch(MetamorphicFailure):
    what = "the scalar and numpy backends disagree"


class ConventionMismatch(MetamorphicFailure):
    what = "a generated module breaks its own calling convention"


class FiniteDifferenceMismatch(MetamorphicFailure):
    what = "the scalar gradient disagrees with central finite differences"


class Refused(Exception):
    """The frontend refused the variant (a name in a combination it documents as illegal)."""


Obs = dict[tuple[Any, ...], float]


def _flat(value: Any) -> list[float]:
    if isinstance(value, np.ndarray):
        return [float(v) for v in value.reshape(-1)]
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flat(item)]
    return [float(value)]


def _nested(flat: list[float], shape: Shape) -> Any:
    if shape == ():
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    return [flat[i * shape[1]:(i + 1) * shape[1]] for i in range(shape[0])]


def _elem_key(name: str, canon: dict[str, str]) -> str:
    """A parameter element's name in the original program (``n.layers.0.w.1`` -> its net's
    original name and the same path)."""
    head, dot, rest = name.partition(".")
    return canon.get(head, head) + dot + rest


@dataclass
class Built:
    label: str
    program: Program
    scalar: Any
    numpy: Any
    canon: dict[str, str]  # this version's global name -> the original's


def _build(label: str, text: str, canon: dict[str, str], case: Case) -> Built:
    program = compile_program(text, "<metamorphic>")
    mods = []
    for backend, gen in (("scalar", generate), ("numpy", generate_numpy)):
        try:
            code = gen(program)
            mods.append(module_from_code(code, f"metamorphic_{backend}",
                                         f"<metamorphic:{label}:{backend}>"))
        except Exception as err:
            raise GeneratedCodeRaised(f"{backend} backend, {label} program: generating or "
                                      f"loading the module raised {err!r}", case) from err
    return Built(label, program, mods[0], mods[1], canon)


def _inputs(program: Program, seed: int) -> dict[str, list[list[Any]]]:
    """Per function (original name): BATCH examples of its arguments (one empty example for a
    function without arguments)."""
    rng = random.Random(seed)
    out = {}
    for name, fn in program.functions.items():
        n = BATCH if fn.arg_shapes else 1
        out[name] = [[_nested([rng.uniform(-1.5, 1.5) for _ in range(math.prod(s))], s)
                      for s in fn.arg_shapes] for _ in range(n)]
    return out


def _call(b: Built, backend: str, fname: str, kind: str, args: Sequence[Any],
          case: Case) -> Any:
    mod = b.scalar if backend == "scalar" else b.numpy
    try:
        fn = entry_point(mod, fname, kind)
    except Exception as err:
        raise GeneratedCodeRaised(f"{backend} backend, {b.label} program: entry_point(module, "
                                  f"{fname!r}, {kind!r}) raised {err!r}", case) from err
    try:
        with np.errstate(all="ignore"):
            return fn(*args)
    except Exception as err:
        raise GeneratedCodeRaised(f"{backend} backend, {b.label} program: {kind} function of "
                                  f"{fname!r} raised {err!r}", case) from err


def _param_vector(b: Built, mod: Any, params: dict[str, float], case: Case) -> list[float]:
    names = list(mod.PARAM_NAMES)
    keys = [_elem_key(n, b.canon) for n in names]
    if sorted(keys) != sorted(params) or len(set(names)) != len(names):
        raise ConventionMismatch(f"{b.label} program: PARAM_NAMES {names} do not name the "
                                 f"parameters {sorted(params)} once each", case)
    return [params[k] for k in keys]


def observe_scalar(b: Built, inputs: dict[str, list[list[Any]]], params: dict[str, float],
                   case: Case) -> Obs:
    """Every number the scalar module gives, keyed by original names and positions."""
    obs: Obs = {}
    mod = b.scalar
    names = list(mod.PARAM_NAMES)
    keys = [_elem_key(n, b.canon) for n in names]
    try:
        init = mod.init_params(0)
    except Exception as err:
        raise GeneratedCodeRaised(f"scalar backend, {b.label} program: init_params raised "
                                  f"{err!r}", case) from err
    for k, v in zip(keys, init):
        obs[("init", k)] = float(v)
    pvec = _param_vector(b, mod, params, case)
    for fname, fn in b.program.functions.items():
        cf = b.canon[fname]
        lead = [pvec] if fn.uses_params else []
        n_out = len(fn.outputs)
        sums: dict[Any, float] = {}
        for e, ex in enumerate(inputs[cf]):
            value = _call(b, "scalar", fname, "value", [*lead, *ex], case)
            got, grads = _pair(_call(b, "scalar", fname, "grad", [*lead, *ex], case), b,
                               "scalar", fname, case)
            for tag, v in (("v", value), ("vg", got)):
                outs = [v] if n_out == 1 else list(v)
                for k, o in enumerate(outs):
                    for j, x in enumerate(_flat(o)):
                        obs[(tag, cf, e, k, j)] = x
            per_out = [grads] if n_out == 1 else list(grads)
            for k, g in enumerate(per_out):
                if fn.uses_params:
                    for key, x in zip(keys, _flat(g)):
                        obs[("g", cf, e, k, ("p", key))] = x
                        sums[key] = sums.get(key, 0.0) + x
                else:
                    for a, ga in enumerate(g):
                        for j, x in enumerate(_flat(ga)):
                            obs[("g", cf, e, k, ("a", a, j))] = x
        if fn.uses_params and n_out == 1 and fn.outputs[0].shape == () and fn.inputs:
            columns = [[ex[a] for ex in inputs[cf]] for a in range(len(fn.inputs))]
            total, gsum = _pair(_call(b, "scalar", fname, "grad_sum", [pvec, *columns], case),
                                b, "scalar", fname, case)
            obs[("vs", cf)] = float(total)
            for key, x in zip(keys, _flat(gsum)):
                obs[("gs", cf, ("p", key))] = x
    return obs


def _pair(result: Any, b: Built, backend: str, fname: str, case: Case) -> tuple[Any, Any]:
    if not isinstance(result, tuple) or len(result) != 2:
        raise ConventionMismatch(f"{backend} backend, {b.label} program: a gradient function of "
                                 f"{fname!r} returned {result!r}, not (value, gradient)", case)
    return result


def _record_numpy(obs: Obs, b: Built, case: Case, tag: str, value: Any, fname: str, cf: str,
                  fn: Any, batched: bool, n: int) -> None:
    n_out = len(fn.outputs)
    outs = [value] if n_out == 1 else list(value) if isinstance(value, tuple) else [value]
    if len(outs) != n_out:
        raise ConventionMismatch(f"numpy backend, {b.label} program: {fname!r} returned "
                                 f"{len(outs)} outputs, not {n_out}", case)
    for k, (o, out) in enumerate(zip(outs, fn.outputs)):
        want = ((n,) if batched else ()) + out.shape
        try:
            arr = np.asarray(o, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ConventionMismatch(f"numpy backend, {b.label} program: output {k} of "
                                     f"{fname!r} is not an array of shape {want}: {o!r}",
                                     case) from err
        if arr.shape != want:
            raise ConventionMismatch(f"numpy backend, {b.label} program: output {k} of "
                                     f"{fname!r} has shape {arr.shape}, not {want}", case)
        for e in range(n):
            for j, x in enumerate(_flat(arr[e] if batched else arr)):
                obs[(tag, cf, e, k, j)] = x


def observe_numpy(b: Built, inputs: dict[str, list[list[Any]]], params: dict[str, float],
                  case: Case) -> Obs:
    """Every number the numpy module gives, keyed like :func:`observe_scalar`'s."""
    obs: Obs = {}
    mod = b.numpy
    if list(mod.PARAM_NAMES) != list(b.scalar.PARAM_NAMES):
        raise ConventionMismatch(f"{b.label} program: numpy PARAM_NAMES {mod.PARAM_NAMES} != "
                                 f"scalar PARAM_NAMES {b.scalar.PARAM_NAMES}", case)
    if getattr(mod, "BACKEND", None) != "numpy":
        raise ConventionMismatch(f"{b.label} program: numpy module's BACKEND is "
                                 f"{getattr(mod, 'BACKEND', None)!r}", case)
    keys = [_elem_key(n, b.canon) for n in mod.PARAM_NAMES]
    pvec = np.asarray(_param_vector(b, mod, params, case), dtype=np.float64)
    for fname, fn in b.program.functions.items():
        cf = b.canon[fname]
        examples = inputs[cf]
        batched = bool(fn.inputs)
        cols = [np.asarray([ex[a] for ex in examples], dtype=np.float64)
                for a in range(len(fn.inputs))]
        lead = [pvec] if fn.uses_params else []
        n_out = len(fn.outputs)
        shapes = [o.shape for o in fn.outputs]

        def record(tag: str, value: Any, fname: str = fname, cf: str = cf,
                   fn: Any = fn, batched: bool = batched, n: int = len(examples)) -> None:
            _record_numpy(obs, b, case, tag, value, fname, cf, fn, batched, n)

        record("v", _call(b, "numpy", fname, "value", [*lead, *cols], case))
        if n_out != 1 or (fn.uses_params and shapes[0] != ()):
            continue  # the numpy backend writes no gradient for these (docs/generated.md)
        values, grads = _pair(_call(b, "numpy", fname, "grad", [*lead, *cols], case), b,
                              "numpy", fname, case)
        record("vg", values)
        if fn.uses_params:
            flat = _flat(np.asarray(grads))
            if len(flat) != len(keys):
                raise ConventionMismatch(f"numpy backend, {b.label} program: the gradient of "
                                         f"{fname!r} has {len(flat)} numbers, not {len(keys)}",
                                         case)
            for key, x in zip(keys, flat):
                obs[("gs", cf, ("p", key)) if batched else ("g", cf, 0, 0, ("p", key))] = x
        else:
            if len(grads) != len(fn.inputs):
                raise ConventionMismatch(f"numpy backend, {b.label} program: {fname!r} gave "
                                         f"{len(grads)} argument gradients", case)
            for a, (ga, shape) in enumerate(zip(grads, fn.arg_shapes)):
                arr = np.asarray(ga, dtype=np.float64)
                if arr.shape != (len(examples),) + shape:
                    raise ConventionMismatch(f"numpy backend, {b.label} program: the gradient "
                                             f"of {fname!r} for argument {a} has shape "
                                             f"{arr.shape}", case)
                for e in range(len(examples)):
                    for j, x in enumerate(_flat(arr[e])):
                        obs[("g", cf, e, 0, ("a", a, j))] = x
    return obs


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= rtol * max(abs(a), abs(b)) + atol


def _describe(key: tuple[Any, ...]) -> str:
    tag = {"v": "value", "vg": "value from _grad", "g": "gradient", "gs": "batch-summed gradient",
           "vs": "batch-summed value", "init": "init_params(0)"}[key[0]]
    return f"{tag} {key[1:]}"


def compare(a: Obs, b: Obs, rtol: float, floor: float, *, same_keys: bool,
            skip: Sequence[str] = ()) -> list[str]:
    """Mismatches between two observations (the keys of ``b`` must be among ``a``'s; with
    ``same_keys`` the key sets must be equal). ``floor`` is an absolute tolerance relative to
    1 + the magnitude of the numbers compared."""
    problems = []
    ka = {k for k in a if k[0] not in skip}
    kb = {k for k in b if k[0] not in skip}
    if same_keys and ka != kb:
        problems.append(f"different results: only first {sorted(ka - kb, key=repr)[:5]}, only "
                        f"second {sorted(kb - ka, key=repr)[:5]}")
    elif not kb <= ka:
        problems.append(f"unexpected results {sorted(kb - ka, key=repr)[:5]}")
    for key in sorted(ka & kb, key=repr):
        x, y = a[key], b[key]
        if not _close(x, y, rtol, floor * (1 + max(abs(x), abs(y)) if math.isfinite(x)
                                           and math.isfinite(y) else 0.0)):
            problems.append(f"{_describe(key)}: {x!r} vs {y!r}")
    return problems


def internal_scalar(obs: Obs) -> list[str]:
    """f and f_grad give the same value; f_grad_sum is the sum of f_grad over the batch."""
    problems = []
    for key, x in obs.items():
        if key[0] == "v" and not _close(x, obs[("vg", *key[1:])], 1e-12, 0.0):
            problems.append(f"value {key[1:]}: f gives {x!r}, f_grad {obs[('vg', *key[1:])]!r}")
        if key[0] == "vs":
            want = math.fsum(v for k, v in obs.items() if k[0] == "v" and k[1] == key[1])
            if not _close(x, want, 1e-9, 1e-9 * (1 + abs(want))):
                problems.append(f"f_grad_sum of {key[1]!r}: value {x!r}, sum of values {want!r}")
        if key[0] == "gs":
            want = math.fsum(v for k, v in obs.items() if k[0] == "g" and k[1] == key[1]
                             and k[4] == key[2])
            if not _close(x, want, 1e-9, 1e-9 * (1 + abs(want))):
                problems.append(f"f_grad_sum of {key[1]!r}: gradient {key[2]} {x!r}, sum of "
                                f"f_grad's {want!r}")
    return problems


def _bumped(pvec: list[float], args: list[Any], shapes: list[Shape], w: Any, keys: list[str],
            h: float) -> tuple[list[float], list[Any]]:
    """The parameters and arguments with the one named by ``w`` moved by ``h``."""
    if w[0] == "p":
        p = list(pvec)
        p[keys.index(w[1])] += h
        return p, args
    _, a, j = w
    new = list(args)
    flat = _flat(args[a])
    flat[j] += h
    new[a] = _nested(flat, shapes[a])
    return pvec, new


def finite_differences(b: Built, obs: Obs, inputs: dict[str, list[list[Any]]],
                       params: dict[str, float], case: Case) -> list[str]:
    """The scalar gradient against central differences (step 1e-6, scaled), at each function's
    first example; for several or non-scalar outputs, the gradient of each output's sum."""
    problems = []
    keys = [_elem_key(n, b.canon) for n in b.scalar.PARAM_NAMES]
    pvec = _param_vector(b, b.scalar, params, case)
    for fname, fn in b.program.functions.items():
        cf = b.canon[fname]
        args = inputs[cf][0]
        n_out = len(fn.outputs)

        def total(p: list[float], a: list[Any], k: int, fname: str = fname,
                  fn: Any = fn, n_out: int = n_out) -> float:
            lead = [p] if fn.uses_params else []
            v = _call(b, "scalar", fname, "value", [*lead, *a], case)
            return math.fsum(_flat(v if n_out == 1 else v[k]))

        wrt: list[Any] = ([("p", key) for key in keys] if fn.uses_params else
                          [("a", a, j) for a, shape in enumerate(fn.arg_shapes)
                           for j in range(math.prod(shape))])
        for k in range(n_out):
            f0 = total(pvec, args, k)
            for w in wrt:
                analytic = obs[("g", cf, 0, k, w)]
                x0 = pvec[keys.index(w[1])] if w[0] == "p" else _flat(args[w[1]])[w[2]]
                h = 1e-6 * max(1.0, abs(x0))
                ends = [total(*_bumped(pvec, args, fn.arg_shapes, w, keys, step), k)
                        for step in (h, -h)]
                if not all(map(math.isfinite, [f0, *ends])):
                    continue  # an infinite or nan value has no central difference to compare
                fd = (ends[0] - ends[1]) / (2 * h)
                if not _close(analytic, fd, 1e-5, 1e-7 * (1 + abs(f0))):
                    problems.append(f"d {cf!r}[output {k}] / d {w}: analytic {analytic!r}, "
                                    f"central difference {fd!r}")
    return problems


def check_case(case: Case, *, fd: bool = True) -> dict[str, Any]:
    """Run every check on one case; raise a :class:`MetamorphicFailure` subclass on the first
    property that fails (or :class:`Refused`). Returns a few statistics."""
    try:
        original = _build("original", case.original, {n: n for n, _ in case.renaming}, case)
    except ExprgradError as err:
        raise GeneratorBug(str(err), case) from err
    try:
        variant = _build(case.kind + "d", case.variant, {b: a for a, b in case.renaming}, case)
    except ExprgradNameError as err:
        raise Refused(str(err)) from err
    except ExprgradError as err:
        raise GeneratedCodeRaised(f"the {case.kind}d program does not compile: {err}",
                                  case) from err
    inputs = _inputs(original.program, case.seed)
    init = original.scalar.init_params(0)
    params = {_elem_key(n, original.canon): float(v)
              for n, v in zip(original.scalar.PARAM_NAMES, init)}
    obs = {}
    for b in (original, variant):
        for backend, observe in (("scalar", observe_scalar), ("numpy", observe_numpy)):
            try:
                obs[b.label, backend] = observe(b, inputs, params, case)
            except (MetamorphicFailure, Refused):
                raise
            except Exception as err:  # a result of an unexpected type or structure
                raise ConventionMismatch(f"{backend} backend, {b.label} program: reading the "
                                         f"results failed with {err!r}", case) from err
    vlabel = variant.label
    if case.kind == "rename":
        mismatch: type[MetamorphicFailure] = RenameMismatch
        rtol, floor, skip = 1e-12, 0.0, ()
    else:
        mismatch = ReorderMismatch
        rtol, floor, skip = 1e-12, 1e-13, ("init",)  # uniform draws follow declaration order
    for backend in ("scalar", "numpy"):
        problems = compare(obs["original", backend], obs[vlabel, backend], rtol, floor,
                           same_keys=True, skip=skip)
        if problems:
            raise mismatch(f"{backend} backend: " + "; ".join(problems[:6]), case)
    for b in (original, variant):
        problems = internal_scalar(obs[b.label, "scalar"])
        if problems:
            raise ConventionMismatch(f"scalar backend, {b.label} program: "
                                     + "; ".join(problems[:6]), case)
        problems = compare(obs[b.label, "scalar"], obs[b.label, "numpy"], 1e-9, 1e-9,
                           same_keys=False, skip=("init",))
        if problems:
            raise BackendMismatch(f"{b.label} program: " + "; ".join(problems[:6]), case)
    if fd:
        problems = finite_differences(original, obs["original", "scalar"], inputs, params, case)
        if problems:
            raise FiniteDifferenceMismatch("; ".join(problems[:6]), case)
    return {"functions": len(original.program.functions), "params": len(params),
            "compared": len(obs["original", "scalar"]) + len(obs["original", "numpy"])}


def _run(case: Case) -> None:
    try:
        check_case(case)
    except Refused as err:
        event("variant refused by the frontend")
        note(f"refused: {err}")
        reject()
    except MetamorphicFailure as err:
        if case.spec is None or Phase.shrink in settings.get_profile(PROFILE).phases:
            raise
        small = shrink(case.spec, signature(err), GREEDY_SHRINK_SECONDS)
        if small == case.spec:
            raise
        _, again = outcome(small.case())
        assert isinstance(again, MetamorphicFailure)
        raise type(again)(f"{again.detail}\n{small.case()!r}\n(shrunk greedily from this "
                          f"case: {err.detail[:300]})\n{case!r}") from err


# ---- failure kinds and greedy shrinking -------------------------------------------------------
# Used when hypothesis does not shrink (the CI profile: its shrinker may take minutes on these
# cases) and by scripts/fuzz_metamorphic.py: cut the model down while the same kind of failure
# persists.

#: words in quotes that tell failures apart (other quoted words are user names)
_KEEP = {"function", "float", "int", "numpy.ndarray", "asarray", "params", "list", "tuple"}


def _skeleton(match: re.Match[str]) -> str:
    """A quoted user name reduced to its form: 'pa_1' -> 'a_N'."""
    word = match.group(0)[1:-1]
    if word in _KEEP:
        return match.group(0)
    if "__" in word:
        return "'..__..'"
    return "'" + re.sub(r"\d+", "N", re.sub(r"[A-Za-z]+", "a", word)) + "'"


def signature(err: BaseException) -> str:
    """A failure's kind: the property, the backend and the gist of the message, with user names
    and numbers blotted out."""
    if isinstance(err, GeneratedCodeRaised) and " raised " in err.detail:
        where, _, what = err.detail.partition(" raised ")
        if err.__cause__ is not None:
            what = f"{type(err.__cause__).__name__}: {err.__cause__}"
        where = re.sub(r"'[^']*'", "'?'", where)
        where = re.sub(r"entry_point\([^)]*\)", "entry_point(...)", where)
        what = re.sub(r"(positional arguments?|must have the same shape|operands|indices for "
                      r"array|input operand|broadcast shape).*", r"\1 ...", what.split("\n")[0])
        what = re.sub(r"'[^']*'", _skeleton, what)
        what = re.sub(r"0x[0-9a-fA-F]+|\d+", "N", what)
        return f"{type(err).__name__}: {where} raised {what[:160]}"
    if isinstance(err, MetamorphicFailure):
        text = re.sub(r"0x[0-9a-fA-F]+", "N", err.detail.split(";")[0].split("\n")[0])
        text = re.sub(r"(is not an array of shape [^:]*:|returned) .*", r"\1 ...", text)
        text = re.sub(r"'[^']*'|\"[^\"]*\"", "'?'", text)
        text = re.sub(r"\d+(\.\d+)?(e-?\d+)?", "N", text)
        while re.search(r"\([^()]*\)", text):
            text = re.sub(r"\([^()]*\)", "<>", text)
        text = re.sub(r":\s*-?N\S* vs -?N\S*", "", text)
        return f"{type(err).__name__}: {text[:160]}"
    return f"checker crashed: {type(err).__name__}: {str(err)[:120]}"


def outcome(case: Case, fd: bool = True) -> tuple[str, BaseException | None]:
    """("pass" | "refused" | a failure's signature, the exception)."""
    try:
        check_case(case, fd=fd)
    except Refused as err:
        return "refused", err
    except Exception as err:  # a failing property, or a bug in the checker itself
        return signature(err), err
    return "pass", None


def _children(e: Expr) -> list[tuple[Any, Expr]]:
    """(path step, child) pairs of an expression."""
    kind = e[0]
    if kind == "bin":
        return [(2, e[2]), (3, e[3])]
    if kind in ("neg", "paren", "index"):
        return [(1, e[1])]
    if kind == "call":
        return [((2, i), a) for i, a in enumerate(e[2])]
    if kind == "list":
        return [((1, i), a) for i, a in enumerate(e[1])]
    return []


def _replace(e: Expr, path: list[Any], new: Expr) -> Expr:
    if not path:
        return new
    step, rest = path[0], path[1:]
    items = list(e)
    if isinstance(step, tuple):
        pos, i = step
        seq = list(items[pos])
        seq[i] = _replace(seq[i], rest, new)
        items[pos] = seq
    else:
        items[step] = _replace(items[step], rest, new)
    return tuple(items)


def _subexpressions(e: Expr, path: list[Any] | None = None) -> Iterator[tuple[list[Any], Expr]]:
    path = path or []
    yield path, e
    for step, child in _children(e):
        yield from _subexpressions(child, [*path, step])


def _simpler(e: Expr) -> Iterator[Expr]:
    """``e`` with one subexpression replaced by one of its children, or by 1."""
    for path, sub in _subexpressions(e):
        for _, child in _children(sub):
            yield _replace(e, path, child)
        if sub[0] != "num":
            yield _replace(e, path, ("num", "1"))


def _without(order: list[int], i: int) -> list[int]:
    return [j - (j > i) for j in order if j != i]


def _candidates(spec: Spec) -> Iterator[Spec]:
    """Smaller or plainer variants of a spec, biggest cuts first (many are invalid programs,
    which fail differently and are passed over)."""
    m, naming = spec.model, spec.naming
    for i in reversed(range(len(m.defs))):
        yield replace(spec, model=Model(m.decls, m.defs[:i] + m.defs[i + 1:]),
                      naming=Naming(naming.globals, naming.locals[:i] + naming.locals[i + 1:]),
                      def_order=_without(spec.def_order, i))
    for i in reversed(range(len(m.decls))):
        yield replace(spec, model=Model(m.decls[:i] + m.decls[i + 1:], m.defs),
                      decl_order=_without(spec.decl_order, i))
    for fi, f in enumerate(m.defs):
        def with_def(new: Def, fi: int = fi) -> Spec:
            return replace(spec, model=Model(m.decls, m.defs[:fi] + [new] + m.defs[fi + 1:]))
        for si in reversed(range(len(f.body))):
            yield with_def(replace(f, body=f.body[:si] + f.body[si + 1:]))
        if len(f.returns) > 1:
            yield with_def(replace(f, returns=f.returns[:1], ret_shapes=f.ret_shapes[:1]))
        if f.args and not any(s[0] == "grad" for s in f.body):
            yield with_def(replace(f, args=f.args[:-1]))
        for ri, r in enumerate(f.returns):
            for simpler in _simpler(r):
                yield with_def(replace(f, returns=f.returns[:ri] + [simpler] + f.returns[ri + 1:]))
        for si, stmt in enumerate(f.body):
            for simpler in _simpler(stmt[2]):
                new = (*stmt[:2], simpler, *stmt[3:])
                yield with_def(replace(f, body=f.body[:si] + [new] + f.body[si + 1:]))
    for sym, name in naming.globals.items():  # plain names read more easily
        if name != sym and sym not in naming.globals.values():
            yield replace(spec, naming=Naming({**naming.globals, sym: sym}, naming.locals))
    for fi, lmap in enumerate(naming.locals):
        for sym, name in lmap.items():
            if name != sym and sym not in lmap.values() and sym not in naming.globals.values():
                yield replace(spec, naming=Naming(naming.globals, naming.locals[:fi]
                                                  + [{**lmap, sym: sym}] + naming.locals[fi + 1:]))
    if spec.decl_order != sorted(spec.decl_order):
        yield replace(spec, decl_order=sorted(spec.decl_order))
    if spec.def_order != sorted(spec.def_order):
        yield replace(spec, def_order=sorted(spec.def_order))


def _simpler_than(a: Spec, b: Spec) -> bool:
    ca, cb = a.case(), b.case()
    if len(ca.original) + len(ca.variant) != len(cb.original) + len(cb.variant):
        return len(ca.original) + len(ca.variant) < len(cb.original) + len(cb.variant)
    return (a.naming != b.naming or a.decl_order != b.decl_order
            or a.def_order != b.def_order)  # a renaming or a reordering undone


def shrink(spec: Spec, sig: str, budget: float, fd: bool = True) -> Spec:
    """Greedily, the smallest spec found within ``budget`` seconds that still fails with the
    same signature."""
    deadline = time.monotonic() + budget
    improved = True
    while improved and time.monotonic() < deadline:
        improved = False
        for cand in _candidates(spec):
            if time.monotonic() > deadline:
                break
            try:
                if not _simpler_than(cand, spec):
                    continue
                got, _ = outcome(cand.case(), fd)
            except Exception:
                continue  # the candidate cannot even be rendered
            if got == sig:
                spec, improved = cand, True
                break
    return spec


# ---- the properties ---------------------------------------------------------------------------


@settings.get_profile(PROFILE)
@given(case=rename_cases())
def test_renaming_identifiers_changes_no_value_or_gradient(case: Case) -> None:
    _run(case)


@settings(settings.get_profile(PROFILE),
          max_examples=max(10, settings.get_profile(PROFILE).max_examples * 3 // 5))
@given(case=reorder_cases())
def test_reordering_independent_statements_changes_nothing(case: Case) -> None:
    _run(case)


def test_the_generator_writes_valid_programs_with_the_plain_names() -> None:
    """A generator self-check: programs with plain names compile and pass every check against
    themselves (so a reported failure is about the variant, not the generator)."""
    rng = random.Random(20240611)
    for _ in range(30):
        model = draw_model(RandomDrawer(rng))
        text = render(model, Naming.plain(model))
        case = Case(text, text, tuple(Naming.plain(model).globals.items()), "rename",
                    rng.randrange(2**16))
        check_case(case)


def test_the_hostile_pool_is_filtered_by_trying() -> None:
    assert not accepted("func", "max")  # exprgrad's own builtin
    assert not accepted("local", "exp")
    assert accepted("func", "zip") and accepted("arg", "B") and accepted("param", "w_0")
    assert accepted("local", "t7") and accepted("net", "np")


# ---- known cases ------------------------------------------------------------------------------
# Each pairs a program with plain names with a renamed one that triggers a reported bug, and
# states the expected numbers where they are easy to compute by hand.

KNOWN: dict[str, Case] = {
    "element_names_w_dot_0_and_w_0": Case(
        "param w[2] = [1, 2]\nparam wz = 10\n"
        "def loss(x):\n    return w[0] + w[1] * x + wz * x * x\n",
        "param w[2] = [1, 2]\nparam w_0 = 10\n"
        "def loss(x):\n    return w[0] + w[1] * x + w_0 * x * x\n",
        (("w", "w"), ("wz", "w_0"), ("loss", "loss"))),
    "matrix_elements_and_a_vector_w_1": Case(
        "param w[2, 2] = [[1, 2], [3, 4]]\nparam wz[2] = [5, 6]\n"
        "def loss(x[2]):\n    return sum(w @ x) + dot(wz, x)\n",
        "param w[2, 2] = [[1, 2], [3, 4]]\nparam w_1[2] = [5, 6]\n"
        "def loss(x[2]):\n    return sum(w @ x) + dot(w_1, x)\n",
        (("w", "w"), ("wz", "w_1"), ("loss", "loss"))),
    "net_n_and_param_n_w": Case(
        "net n = Neuron(2)\nparam nz[1, 2] = [[0.5, -0.25]]\n"
        "def loss(x[2]):\n    return n(x) + sum(nz @ x)\n",
        "net n = Neuron(2)\nparam n_w[1, 2] = [[0.5, -0.25]]\n"
        "def loss(x[2]):\n    return n(x) + sum(n_w @ x)\n",
        (("n", "n"), ("nz", "n_w"), ("loss", "loss"))),
    "numpy_locals_B_p_t7_as_arguments": Case(
        "param w[2] = [0.5, -1]\n"
        "def loss(a, b[2], c):\n    h = tanh(w * b)\n    return a * sum(h) + c * a\n",
        "param w[2] = [0.5, -1]\n"
        "def loss(B, p[2], t7):\n    h = tanh(w * p)\n    return B * sum(h) + t7 * B\n",
        (("w", "w"), ("loss", "loss"))),
    "function_named_zip": Case(
        "param w = 0.5\ndef f(x):\n    return w * x * x\n",
        "param w = 0.5\ndef zip(x):\n    return w * x * x\n",
        (("w", "w"), ("f", "zip"))),
    "function_named_isinstance": Case(
        "def f(a):\n    return a * 2\ndef g(a, b):\n    return (1 + a * a) ** b\n",
        "def isinstance(a):\n    return a * 2\ndef g(a, b):\n    return (1 + a * a) ** b\n",
        (("f", "isinstance"), ("g", "g"))),
    "function_named_np": Case(
        "def f(x):\n    return x * 2\ndef g(x[2]):\n    return sum(tanh(x))\n",
        "def np(x):\n    return x * 2\ndef g(x[2]):\n    return sum(tanh(x))\n",
        (("f", "np"), ("g", "g"))),
    # names may end in '_'; an element or temporary named '_' + name + '__0' must not follow
    "vector_argument_ending_in_underscore": Case(
        "def f(x[2]):\n    return sum(x * x)\n",
        "def f(x_[2]):\n    return sum(x_ * x_)\n", (("f", "f"),)),
    "vector_param_ending_in_underscore": Case(
        "param w[2] = [1, 2]\ndef f(x):\n    return w[0] * x + w[1]\n",
        "param w_[2] = [1, 2]\ndef f(x):\n    return w_[0] * x + w_[1]\n",
        (("w", "w_"), ("f", "f"))),
    "net_ending_in_underscore": Case(
        "net n = Neuron(2)\ndef f(x[2]):\n    return n(x)\n",
        "net n_ = Neuron(2)\ndef f(x[2]):\n    return n_(x)\n", (("n", "n_"), ("f", "f"))),
    "vector_local_ending_in_underscore": Case(
        "def f(x[2]):\n    v = x * 2\n    return sum(v)\n",
        "def f(x[2]):\n    v_ = x * 2\n    return sum(v_)\n", (("f", "f"),)),
    "function_named_len": Case(
        "def f(x):\n    return sin(x)\n",
        "def len(x):\n    return sin(x)\n",
        (("f", "len"),)),
}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_known_renamings(name: str) -> None:
    check_case(KNOWN[name])


def _both(text: str, fname: str) -> tuple[Any, Any, list[float]]:
    program = compile_program(text, "<known>")
    scalar = module_from_code(generate(program), "known_scalar", "<known:scalar>")
    batched = module_from_code(generate_numpy(program), "known_numpy", "<known:numpy>")
    return scalar, batched, scalar.init_params(0)


def test_param_w_beside_w_0_gives_13_not_22() -> None:
    """The issue's example: w[0] + w[1] * x + w_0 * x * x at x = 1 is 1 + 2 + 10."""
    scalar, batched, params = _both(KNOWN["element_names_w_dot_0_and_w_0"].variant, "loss")
    assert params == [1.0, 2.0, 10.0]
    value, grads = entry_point(scalar, "loss", "grad")(params, 1.0)
    assert (value, grads) == (13.0, [1.0, 1.0, 1.0])
    assert entry_point(scalar, "loss", "value")(params, 2.0) == 1 + 2 * 2 + 10 * 4
    values, gsum = entry_point(batched, "loss", "grad")(np.asarray(params), np.asarray([1.0, 2.0]))
    assert values.tolist() == [13.0, 45.0]
    assert gsum.tolist() == [2.0, 3.0, 5.0]


def test_param_w_matrix_beside_w_1_vector() -> None:
    scalar, batched, params = _both(KNOWN["matrix_elements_and_a_vector_w_1"].variant, "loss")
    x = [1.0, -2.0]
    want = (1 - 4) + (3 - 8) + (5 - 12)
    assert entry_point(scalar, "loss", "value")(params, x) == want
    value, grads = entry_point(scalar, "loss", "grad")(params, x)
    assert value == want and grads == [1.0, -2.0, 1.0, -2.0, 1.0, -2.0]
    values, _ = entry_point(batched, "loss", "grad")(np.asarray(params), np.asarray([x]))
    assert values.tolist() == [want]


def test_net_n_beside_param_n_w() -> None:
    scalar, batched, params = _both(KNOWN["net_n_and_param_n_w"].variant, "loss")
    w0, w1, b = params[:3]
    x = [0.5, 1.5]
    want = math.tanh(w0 * x[0] + w1 * x[1] + b) + (0.5 * x[0] - 0.25 * x[1])
    assert entry_point(scalar, "loss", "value")(params, x) == pytest.approx(want, rel=1e-14)
    values, _ = entry_point(batched, "loss", "grad")(np.asarray(params), np.asarray([x]))
    assert values.tolist() == pytest.approx([want], rel=1e-14)


def test_numpy_arguments_named_B_p_t7() -> None:
    scalar, batched, params = _both(KNOWN["numpy_locals_B_p_t7_as_arguments"].variant, "loss")
    rows = [(0.5, [1.0, -1.0], 2.0), (-1.0, [0.25, 0.5], 0.5)]
    want = [a * (math.tanh(0.5 * b[0]) + math.tanh(-b[1])) + c * a for a, b, c in rows]
    for (a, b, c), w in zip(rows, want):
        assert entry_point(scalar, "loss", "value")(params, a, b, c) == pytest.approx(w)
    values, _ = entry_point(batched, "loss", "grad")(
        np.asarray(params), *[np.asarray([r[i] for r in rows]) for i in range(3)])
    assert values.tolist() == pytest.approx(want, rel=1e-14)


def test_function_named_zip_keeps_its_batch_sum() -> None:
    scalar, _, params = _both(KNOWN["function_named_zip"].variant, "zip")
    total, grad = entry_point(scalar, "zip", "grad_sum")(params, [1.0, 2.0, 3.0])
    assert (total, grad) == (0.5 * 14, [14.0])


def test_function_named_isinstance_leaves_pow_alone() -> None:
    scalar, _, _ = _both(KNOWN["function_named_isinstance"].variant, "g")
    assert entry_point(scalar, "g", "value")(1.0, 0.5) == pytest.approx(math.sqrt(2), rel=1e-15)
    assert entry_point(scalar, "isinstance", "value")(3.0) == 6.0


def test_function_named_np_leaves_numpy_alone() -> None:
    _, batched, _ = _both(KNOWN["function_named_np"].variant, "g")
    values, (g,) = entry_point(batched, "g", "grad")(np.asarray([[0.5, -1.0]]))
    assert values.tolist() == pytest.approx([math.tanh(0.5) + math.tanh(-1.0)])
    assert entry_point(batched, "np", "value")(np.asarray([1.5])).tolist() == [3.0]
