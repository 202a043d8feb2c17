"""Every file in examples/ compiles, and `exprgrad check` agrees with what each is meant to show
(the two files that carry the notebook's wrong tanh rule must fail the check)."""

from __future__ import annotations

import pytest
from conftest import EXAMPLES, run_cli

FILES = sorted(p.name for p in EXAMPLES.glob("*.exg"))
EXPECTED_CHECK_FAILURES = {"seed_tanh.exg", "seed_mlp_custom_tanh.exg"}


@pytest.mark.parametrize("name", FILES)
def test_example_compiles_and_checks(name: str) -> None:
    compiled = run_cli("compile", f"examples/{name}")
    assert compiled.returncode == 0, compiled.stderr
    compile(compiled.stdout, name, "exec")
    checked = run_cli("check", f"examples/{name}", "--hessian")
    expected = 1 if name in EXPECTED_CHECK_FAILURES else 0
    assert checked.returncode == expected, checked.stdout + checked.stderr
    assert "Traceback" not in checked.stderr


def test_hessians_of_the_corpus_agree_with_sympy() -> None:
    import sympy as sp
    from test_corpus import CORPUS, SYMBOLS

    import exprgrad

    piecewise = ("relu(", "abs(", "max(", "min(")
    smooth = [c for c in CORPUS if not any(p in c[1] for p in piecewise)]
    assert len(smooth) >= 25
    for name, src, expr, domains in smooth:
        mod = exprgrad.load_source(src, "corpus.exg", hessians=True)
        syms = SYMBOLS[: len(domains)]
        reference = sp.hessian(expr, syms)
        point = [(lo + hi) / 2 + 0.123 for lo, hi in domains]
        subs = {s: sp.Float(v, 30) for s, v in zip(syms, point)}
        _, _, hess = mod.f_hess(*point)
        for i in range(len(syms)):
            for j in range(len(syms)):
                want = float(sp.N(reference[i, j].subs(subs), 30))
                assert abs(hess[i][j] - want) <= 1e-8 * max(1.0, abs(want)), (name, i, j)


@pytest.mark.parametrize("name", FILES)
def test_gradient_costs_at_most_three_forward_passes(name: str) -> None:
    """The cheap-gradient bound, counted on the generated code: arithmetic operations (binary and
    unary operators, calls, conditionals) in f_grad are at most 3x those of f. A def returning m
    values (``return a, b``) has f_grad return m gradients, one reverse pass each after the
    shared forward pass: the bound is then (1 + 2m)x."""
    import ast

    from conftest import EXAMPLES

    import exprgrad

    tree = ast.parse(exprgrad.compile_file(EXAMPLES / name))
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}

    def ops(fn: ast.FunctionDef) -> int:
        return sum(1 for stmt in fn.body[1:] for node in ast.walk(stmt)
                   if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Call, ast.IfExp)))

    pairs = [(functions[n[:-5]], fn) for n, fn in functions.items() if n.endswith("_grad")]
    assert pairs
    def outputs(fn: ast.FunctionDef) -> int:
        value = fn.body[-1].value if isinstance(fn.body[-1], ast.Return) else None
        return len(value.elts) if isinstance(value, ast.Tuple) else 1

    for forward, backward in pairs:
        bound = 1 + 2 * outputs(forward)
        assert ops(backward) <= bound * max(1, ops(forward)), (forward.name, ops(backward),
                                                              ops(forward), bound)
