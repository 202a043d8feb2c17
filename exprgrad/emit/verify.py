"""An allowlist check of generated modules: only the constructs the emitter is meant to produce.

Contract: :func:`verify_module` parses generated source with :mod:`ast` and raises
:class:`UnsafeCodeError` unless every statement and expression is one the code generators emit:
imports of ``math``, ``random`` and ``numpy``; module constants that are strings, numbers and
tuples/dicts of them; the runtime helpers exactly as :data:`exprgrad.ir.ops.HELPERS` spells them
and the parameter helpers (``init_params``, ``param_names``, ...) exactly as
:data:`exprgrad.emit.module.PARAM_HELPERS` does; and functions whose bodies are a docstring,
assignments to plain local names (possibly inside a ``for ... in zip(<the function's
arguments>)`` loop) and one ``return``, over arithmetic, comparisons, conditional expressions,
numbers, and calls of ``math``/``numpy`` functions and the helpers (numpy ufuncs may write into
an array the function made). Numpy modules' array-API code calls functions of the namespace
``xp`` from an allowlist of the array API standard's names (with the keywords ``axis``, ``dtype``
and ``device`` only), and ``xp`` is bound only by ``xp, _dev = _namespace(...)``; a numpy
function may start with ``if <test>: return <its twin>(<its own arguments>)``, handing arrays of
another library to its array-API twin. Names containing ``__`` never pass (the helpers are
compared as text). It is run on every module exprgrad loads, so nothing a ``.exg``
file says can make compiled code do anything but arithmetic.
"""

from __future__ import annotations

import ast
import functools
import re

from ..errors import ExprgradError
from ..ir.ops import HELPERS, OPS
from .module import CONSTANTS, PARAM_HELPERS, Unrecorded


class UnsafeCodeError(ExprgradError):
    """Generated code failed the allowlist (a bug in exprgrad, never the user's mistake)."""

    kind = "unsafe generated code"


#: the numpy functions the numpy backend (exprgrad.emit.arrays) writes itself, beyond the op
#: table's ``np_calls``
OWN_NUMPY_CALLS = frozenset({"asarray", "float64", "float32", "ones", "full", "empty",
                             "reshape", "divide", "ascontiguousarray", "subtract", "exp", "log",
                             "add", "matmul", "inf", "nan", "ndarray"})
#: the array-API functions (and dtypes, constants) the numpy backend writes itself in array-API
#: code, beyond the op table's ``xp_calls``; every one is in the array API standard 2023.12
#: (tests/test_array_api.py checks them against array-api-strict)
OWN_XP_CALLS = frozenset({"asarray", "float64", "float32", "ones", "zeros", "full", "reshape",
                          "take", "concat", "max", "exp", "log", "sum", "inf", "nan"})
#: the keyword arguments array-API calls may take
XP_KEYWORDS = frozenset({"axis", "dtype", "device"})

_MODULES = {"math", "random", "numpy"}
_CONSTANT_NAMES = set(CONSTANTS)


def _math_attrs() -> set[str]:
    """``math.X`` in the helpers and in every op's Python emitter, and inf/nan for constants."""
    texts = list(HELPERS.values())
    for spec in OPS.values():
        if spec.py is not None and spec.arity:
            texts.append(spec.py([f"a{i}" for i in range(spec.arity)], [None] * spec.arity,
                                 Unrecorded()))
    found = {m for t in texts for m in re.findall(r"\bmath\.([A-Za-z_][A-Za-z0-9_]*)", t)}
    return found | {"inf", "nan"}


#: derived from the op table (see exprgrad.ir.ops: ``py`` and ``np_calls``) and the backends' own
_MATH_ATTRS = _math_attrs()
_NUMPY_ATTRS = {c for spec in OPS.values() for c in spec.np_calls} | OWN_NUMPY_CALLS
_XP_ATTRS = {c for spec in OPS.values() for c in spec.xp_calls} | OWN_XP_CALLS
#: array attributes numpy code may use on its own values
_ARRAY_ATTRS = {"T", "sum", "max", "reshape", "shape"}
#: names bound to modules (``xp``: the array namespace of array-API code)
_NAMESPACES = {"math": None, "np": None, "xp": None}
#: numpy functions numpy code calls with an output array after their inputs (``np.add(a, b,
#: out)``), by number of inputs; the output must be an array the function itself made
_OUT_CALLS = {c: spec.arity for spec in OPS.values() if spec.np_into is not None and spec.arity
              for c in spec.np_calls}
_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.MatMult, ast.BitOr, ast.BitAnd)
_CMPOPS = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq, ast.Is, ast.IsNot)


@functools.lru_cache(maxsize=1)
def _helper_dumps() -> dict[str, str]:
    return {name: ast.dump(ast.parse(src).body[0])
            for name, src in {**HELPERS, **PARAM_HELPERS}.items()}


def _fail(node: ast.AST, why: str) -> UnsafeCodeError:
    line = getattr(node, "lineno", "?")
    return UnsafeCodeError(f"generated code line {line}: {why}")


def _check_name(node: ast.AST, name: str) -> None:
    if "__" in name:
        raise _fail(node, f"name {name!r} is not allowed")


def _literal(node: ast.AST) -> None:
    """Module constants: str, numbers, and tuples/dicts/lists of them."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Constant) and isinstance(n.value, (str, int, float)):
            continue
        if isinstance(n, (ast.Tuple, ast.List)):
            stack.extend(n.elts)
        elif isinstance(n, ast.Dict):
            stack.extend(k for k in n.keys if k is not None)
            stack.extend(n.values)
        elif isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
            stack.append(n.operand)
        else:
            raise _fail(n, f"{type(n).__name__} in a module constant")


def _expression(node: ast.AST, callables: set[str]) -> None:
    """Arithmetic over names and numbers, iteratively (generated expressions are shallow)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Name):
            _check_name(n, n.id)
            if not isinstance(n.ctx, ast.Load):
                raise _fail(n, "assignment inside an expression")
        elif isinstance(n, ast.Constant):
            if n.value is None or n.value is Ellipsis:
                continue  # numpy indexing: x[:, None], x[..., 0]
            if not isinstance(n.value, (int, float)) or isinstance(n.value, bool):
                raise _fail(n, f"constant {n.value!r}")
        elif isinstance(n, ast.BinOp) and isinstance(n.op, _BINOPS):
            stack.extend((n.left, n.right))
        elif isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.Not)):
            stack.append(n.operand)
        elif isinstance(n, ast.Compare) and all(isinstance(o, _CMPOPS) for o in n.ops):
            stack.append(n.left)
            stack.extend(n.comparators)
        elif isinstance(n, ast.BoolOp) and isinstance(n.op, (ast.Or, ast.And)):
            stack.extend(n.values)
        elif isinstance(n, ast.IfExp):
            stack.extend((n.test, n.body, n.orelse))
        elif isinstance(n, ast.Attribute) and n.attr in _ARRAY_ATTRS and not (
                isinstance(n.value, ast.Name) and n.value.id in _NAMESPACES):
            stack.append(n.value)  # x.T, x.sum(...) on arrays the function made
        elif isinstance(n, ast.Attribute):
            base = n.value.id if isinstance(n.value, ast.Name) else None
            allowed = {"math": _MATH_ATTRS, "np": _NUMPY_ATTRS, "xp": _XP_ATTRS}.get(base or "")
            if allowed is None or n.attr not in allowed:
                raise _fail(n, f"attribute .{n.attr}")
        elif isinstance(n, ast.Call):
            func = n.func
            if n.keywords:  # only array-API calls take keywords, and only these
                if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                        and func.value.id == "xp") or any(
                            k.arg not in XP_KEYWORDS for k in n.keywords):
                    raise _fail(n, "keyword arguments")
                stack.extend(k.value for k in n.keywords)
            if isinstance(func, ast.Name):
                if func.id not in callables:
                    raise _fail(n, f"call of {func.id!r}")
            elif not isinstance(func, ast.Attribute) or (
                    func.attr == "T"):
                raise _fail(n, "call of a computed function")
            stack.append(func)
            stack.extend(n.args)
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and \
                    func.value.id == "np" and \
                    func.attr in _OUT_CALLS and len(n.args) > _OUT_CALLS[func.attr]:
                if len(n.args) != _OUT_CALLS[func.attr] + 1 or not _local_base(n.args[-1]):
                    raise _fail(n, f"np.{func.attr} writing into something it did not make")
        elif isinstance(n, (ast.Tuple, ast.List)):
            if not isinstance(n.ctx, ast.Load):
                raise _fail(n, "unpacking inside an expression")
            stack.extend(n.elts)
        elif isinstance(n, ast.Subscript):
            stack.extend((n.value, n.slice))
        elif isinstance(n, ast.Slice):
            stack.extend(x for x in (n.lower, n.upper, n.step) if x is not None)
        else:
            raise _fail(n, f"{type(n).__name__} is not an allowed expression")


def _target(node: ast.AST) -> None:
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Name):
            _check_name(n, n.id)
        elif isinstance(n, ast.Subscript) and _local_base(n):
            pass  # numpy code fills its gradient array by slices
        elif isinstance(n, (ast.Tuple, ast.List)):
            stack.extend(n.elts)
        else:
            raise _fail(n, f"assignment to {type(n).__name__}")


def _local_base(node: ast.AST) -> bool:
    """``_g``, ``_g[...]`` or ``_g[...].reshape(...)[...]``: a local array of the function."""
    if isinstance(node, ast.Name):
        return node.id.startswith("_") and "__" not in node.id
    if isinstance(node, ast.Subscript):
        _expression(node.slice, set())
        return _local_base(node.value)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
            node.func.attr == "reshape" and not node.keywords:
        for extra in node.args:
            _expression(extra, set())
        return _local_base(node.func.value)
    return False


def _function(fn: ast.FunctionDef, callables: set[str], first: bool = True,
              last: bool = True, functions: frozenset[str] = frozenset()) -> None:
    """A generated function, or one run of its body (``first``: the run that may start with
    the docstring and the hand-over to a twin, one of ``functions``; ``last``: the run that
    must end with the ``return``)."""
    if fn.decorator_list or fn.returns or fn.args.defaults[:-1] or fn.args.vararg or \
            fn.args.kwarg or fn.args.kwonlyargs or fn.args.posonlyargs:
        raise _fail(fn, f"function {fn.name} has a disallowed signature")
    for arg in fn.args.args:
        _check_name(arg, arg.arg)
        if arg.arg in _NAMESPACES:
            raise _fail(arg, f"an argument named {arg.arg}")
    for default in fn.args.defaults:
        _literal(default)
    body = fn.body
    if first and body and isinstance(body[0], ast.Expr) and \
            isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
        body = body[1:]
    if first and body and isinstance(body[0], ast.If):
        _hand_over(body[0], fn, callables, functions)
        body = body[1:]
    for stmt in body:
        if isinstance(stmt, ast.Assign):
            _assign(stmt, callables)
        elif isinstance(stmt, ast.For):
            _batch_loop(stmt, fn, callables)
        elif isinstance(stmt, ast.Return) and last and stmt is body[-1] and \
                stmt.value is not None:
            _expression(stmt.value, callables)
        else:
            raise _fail(stmt, f"{type(stmt).__name__} statement in {fn.name}")


def _hand_over(stmt: ast.If, fn: ast.FunctionDef, callables: set[str],
               functions: frozenset[str]) -> None:
    """``if <test>: return twin(<the function's arguments, in order>)``: a numpy function
    handing arrays of another library to its array-API twin, another function of the module."""
    _expression(stmt.test, callables)
    call = stmt.body[0].value if len(stmt.body) == 1 and isinstance(
        stmt.body[0], ast.Return) else None
    args = [a.arg for a in fn.args.args]
    if stmt.orelse or not isinstance(call, ast.Call) or call.keywords or not isinstance(
            call.func, ast.Name) or call.func.id not in functions or call.func.id == fn.name \
            or [getattr(a, "id", None) for a in call.args] != args:
        raise _fail(stmt, "an if statement other than the hand-over to an array-API twin")


def _assign(stmt: ast.Assign, callables: set[str]) -> None:
    for target in stmt.targets:
        _target(target)
        names = {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        if names & _NAMESPACES.keys() and not (
                isinstance(target, ast.Tuple) and [getattr(t, "id", None) for t in target.elts][
                    :1] == ["xp"] and len(target.elts) == 2 and isinstance(stmt.value, ast.Call)
                and isinstance(stmt.value.func, ast.Name)
                and stmt.value.func.id == "_namespace" and "_namespace" in callables):
            raise _fail(stmt, f"assignment to {', '.join(sorted(names & _NAMESPACES.keys()))}")
    _expression(stmt.value, callables)


def _batch_loop(stmt: ast.For, fn: ast.FunctionDef, callables: set[str]) -> None:
    """``for (a, b) in zip(a, b, strict=True):`` over the function's own arguments (a batch of
    arguments of different lengths is an error, not a shorter batch), assignments inside."""
    args = {a.arg for a in fn.args.args}
    it = stmt.iter
    strict = [(k.arg, getattr(k.value, "value", None)) for k in it.keywords] if isinstance(
        it, ast.Call) else []
    if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "zip"
            and strict in ([], [("strict", True)]) and it.args
            and all(isinstance(a, ast.Name) and a.id in args for a in it.args)):
        raise _fail(stmt, "a loop over something other than zip of the arguments")
    if stmt.orelse or not isinstance(stmt.target, ast.Tuple) or not all(
            isinstance(t, ast.Name) and t.id not in _NAMESPACES for t in stmt.target.elts):
        raise _fail(stmt, "a loop of an unexpected form")
    _target(stmt.target)
    for inner in stmt.body:
        if not isinstance(inner, ast.Assign):
            raise _fail(inner, f"{type(inner).__name__} statement in a loop")
        _assign(inner, callables)


#: the most lines of a function's body parsed at once: the ast of a whole large module would
#: take about 5 kB per line (3.7 GB for a 33,333-line chain's numpy module)
CHUNK_LINES = 2000


def verify_module(code: str) -> None:
    """Raise UnsafeCodeError unless ``code`` is made only of what the emitter produces.

    The text is parsed a piece at a time, so memory does not grow with the module: top-level
    blocks (split where two blank lines are), and a long function's body in runs of about
    :data:`CHUNK_LINES` lines, each run cut before a line of the body's own indentation and
    parsed under the function's own ``def`` line. Pieces that each parse to complete statements
    parse, joined, to the same statements (a piece that parses alone ends with every bracket and
    string closed); a piece that does not parse alone is refused.
    """
    helpers = _helper_dumps()
    functions = frozenset(re.findall(r"^def (\w+)\(", code, re.MULTILINE))
    defined = functions & set(helpers)
    callables = set(defined) | {"abs", "float", "len", "type"}
    functions -= set(helpers)
    offset = 0
    for k, block in enumerate(code.split("\n\n\n")):
        lines = block.split("\n")
        if len(lines) > CHUNK_LINES and lines[0].startswith("def ") and \
                _def_name(lines[0]) not in helpers:
            _long_function(lines, offset, callables, functions)
        else:
            _top_level(_parse(block, offset).body, helpers, callables, first_block=k == 0,
                       functions=functions)
        offset += len(lines) + 2


def _def_name(line: str) -> str:
    return line[4:].split("(", 1)[0].strip()


def _parse(text: str, offset: int) -> ast.Module:
    """``text`` parsed, its line numbers counted from ``offset`` lines into the module."""
    try:
        return ast.parse("\n" * offset + text)  # (blank lines cost the parser next to nothing)
    except SyntaxError as err:
        raise UnsafeCodeError(f"generated code line {err.lineno or '?'}: a piece that does not "
                              f"parse on its own ({err.msg})") from None


def _long_function(lines: list[str], offset: int, callables: set[str],
                   functions: frozenset[str]) -> None:
    """A generated function's body, run by run under its ``def`` line (see verify_module)."""
    start, n = 1, len(lines)
    while start < n:
        end = min(start + CHUNK_LINES, n)
        while end < n and not (lines[end].startswith("    ") and lines[end][4:5].strip()):
            end += 1  # cut only before a statement of the body itself
        piece = "\n".join([lines[0], *lines[start:end]])
        tree = _parse(piece, offset + start - 1)
        fn = tree.body[0] if tree.body else None
        if len(tree.body) != 1 or not isinstance(fn, ast.FunctionDef):
            raise _fail(tree.body[-1] if tree.body else tree, "a statement after a function")
        fn.lineno = offset + 1
        _check_name(fn, fn.name)
        _function(fn, callables, first=start == 1, last=end == n, functions=functions)
        start = end


def _top_level(body: list[ast.stmt], helpers: dict[str, str], callables: set[str],
               first_block: bool, functions: frozenset[str] = frozenset()) -> None:
    """The statements of a top-level block."""
    for index, stmt in enumerate(body):
        if first_block and index == 0 and isinstance(stmt, ast.Expr) and \
                isinstance(stmt.value, ast.Constant):
            continue  # the module docstring
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.name not in _MODULES or alias.asname not in (None, "np"):
                    raise _fail(stmt, f"import of {alias.name}")
        elif isinstance(stmt, ast.Assign):
            if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name) or \
                    stmt.targets[0].id not in _CONSTANT_NAMES:
                raise _fail(stmt, "a module-level assignment")
            _literal(stmt.value)
        elif isinstance(stmt, ast.FunctionDef):
            if stmt.name in helpers:
                if ast.dump(stmt) != helpers[stmt.name]:
                    raise _fail(stmt, f"helper {stmt.name} differs from exprgrad's")
                continue
            _check_name(stmt, stmt.name)
            _function(stmt, callables, functions=functions)
        else:
            raise _fail(stmt, f"{type(stmt).__name__} at module level")
