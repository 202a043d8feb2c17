"""The emitters' building blocks: the namer, structured fusion, imports recorded on use."""

from __future__ import annotations

import builtins
import keyword
import re

from exprgrad.emit.names import MODULE_NAMES, Namer
from exprgrad.emit.scalar import FUSE_LIMIT, Assign, Op, Var, _dce, _fuse, _op_count
from exprgrad.ir.ops import HELPERS


def test_the_namer_never_gives_a_reserved_or_repeated_name() -> None:
    namer = Namer(frozenset(HELPERS))
    reserved = set(dir(builtins)) | set(keyword.kwlist) | MODULE_NAMES | set(HELPERS)
    wanted = ["f", "zip", "len", "np", "math", "BACKEND", "f", "zip", "zip_2", "x_", "x_", "_div"]
    given = [namer.public(w) for w in wanted]
    assert len(set(given)) == len(given)
    assert not set(given) & reserved
    assert all("__" not in g for g in given)
    assert given[:2] == ["f", "zip_2"] and given[6:9] == ["f_2", "zip_3", "zip_2_2"]
    scope = namer.scope()
    local = [scope.fresh(w) for w in ["f", "x", "x", "_w_0", "_w_0", "params"]]
    assert len(set(local)) == len(local) and not set(local) & (reserved | set(given))
    temps = {scope.temp() for _ in range(50)}
    assert len(temps) == 50 and not temps & set(local)


def _chain(n: int) -> tuple[list[Assign], Var]:
    """x1 = x0 + 1, x2 = x1 + 1, ...: every temporary used once, all on one line."""
    prev = Var("x", temp=False)
    stmts = []
    for i in range(n):
        target = Var(f"_t{i}")
        stmts.append(Assign(target, Op("add", [prev, 1.0]), 1))
        prev = target
    return stmts, prev


def test_fusion_is_pure_and_bounded() -> None:
    stmts, last = _chain(100)
    before = [(s.target, s.value, list(s.value.args)) for s in stmts if isinstance(s.value, Op)]
    fused = _fuse(_dce(stmts, [last]), [last])
    after = [(s.target, s.value, list(s.value.args)) for s in stmts if isinstance(s.value, Op)]
    assert before == after  # the input statements are unchanged
    assert all(_op_count(s.value) <= FUSE_LIMIT for s in fused)
    assert sum(_op_count(s.value) for s in fused) == 100  # every operation kept, none repeated
    again = _fuse(fused, [last])  # fusing fused statements stays within the bound
    assert all(_op_count(s.value) <= FUSE_LIMIT for s in again)


def test_an_argument_printed_twice_is_not_folded() -> None:
    x = Var("x", temp=False)
    t = Var("_t1")
    sq = Var("_t2")
    stmts = [Assign(t, Op("add", [x, 1.0]), 1), Assign(sq, Op("pow", [t, 2.0]), 1)]
    fused = _fuse(stmts, [sq])
    assert [s.target for s in fused] == [t, sq]  # x**2 prints t * t: t stays a variable


def test_helpers_use_math_and_builtins_only() -> None:
    """A helper needs math (imported when its text names it) and builtins, nothing else."""
    import ast

    for name, source in HELPERS.items():
        tree = ast.parse(source)
        fn = tree.body[0]
        assert isinstance(fn, ast.FunctionDef) and fn.name == name and len(tree.body) == 1
        params = [*fn.args.args, *filter(None, [fn.args.vararg])]
        local = {a.arg for a in params} | {n.id for n in ast.walk(fn)
                                           if isinstance(n, ast.Name)
                                           and isinstance(n.ctx, ast.Store)}
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                assert node.id in local | {"math"} | set(dir(builtins)), (name, node.id)


def test_no_local_takes_the_name_of_a_generated_function() -> None:
    """An argument named like another def's generated function is renamed in the signature,
    whichever def comes first, so no function's local shadows a module-level function."""
    import ast

    from exprgrad.emit.arrays import generate_numpy
    from exprgrad.emit.scalar import generate
    from exprgrad.lower.lowering import compile_program

    program = compile_program("def f(g_grad, h):\n    return g_grad * h\n"
                              "def g(x):\n    return x * x\n", "n.exg")
    for code in (generate(program), generate_numpy(program)):
        tree = ast.parse(code)
        functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
            local = {a.arg for a in fn.args.args} | {
                t.id for n in ast.walk(fn) if isinstance(n, ast.Assign)
                for t in n.targets if isinstance(t, ast.Name)}
            assert not local & functions, (fn.name, local & functions)


def test_long_names_give_short_locals() -> None:
    """A 20,000-character parameter name (and networks nested under long names) gives locals
    of at most 60 characters, still distinct per element, and the right sum."""
    from exprgrad.api import compile_source, load_source

    long = "p" * 20_000
    text = f"param {long}[3, 4] = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]\n" \
           f"def f(x):\n    return x * sum({long})\n"
    code = compile_source(text, "long.exg")
    names = set(re.findall(r"\b_pp\w*", code))
    assert len(names) == 12 and max(map(len, names)) <= 60
    assert load_source(text, "long.exg").f(load_source(text, "l.exg").init_params(0), 2.0) \
        == 2 * 78
