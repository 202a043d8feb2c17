"""User-written grad rules: each call of a function with rules keeps its own rules through
second derivatives, and a rule can never silently lose a parameter's gradient."""

from __future__ import annotations

import json

import pytest

import exprgrad
from exprgrad.errors import ExprgradTypeError

SQ = """\
def sq(x):
    y = x * x
    grad x = 2 * x * dout
    return y
"""


def test_nested_calls_of_a_function_with_rules_have_right_hessians() -> None:
    """x**4 = sq(sq(x)): differentiating the outer call must not rewrite the inner call's rule
    (both used to share one dout, and the Hessian came out 12 instead of 27 at 1.5)."""
    mod = exprgrad.load_source(SQ + "def h(x):\n    return sq(sq(x))\n"
                               "def k(x, y):\n    return sq(sq(x) + y)\n", hessians=True)
    value, (d,), ((dd,),) = mod.h_hess(1.5)
    assert (value, d, dd) == (1.5 ** 4, 4 * 1.5 ** 3, 12 * 1.5 ** 2)
    # k = (x^2 + y)^2: d2k/dx2 = 12x^2 + 4y, d2k/dxdy = 4x, d2k/dy2 = 2
    _, _, hess = mod.k_hess(1.0, 2.0)
    assert hess == ((20.0, 4.0), (4.0, 2.0))


def test_a_function_with_rules_may_not_use_a_parameter() -> None:
    with pytest.raises(ExprgradTypeError) as info:
        exprgrad.compile_source("param w = 2\ndef f(x):\n    grad x = w * dout\n"
                                "    return w * x\ndef loss(x):\n    return f(x) * 3\n", "p.exg")
    assert "uses the parameter 'w'" in str(info.value) and info.value.lineno == 2


def test_check_never_calls_a_comparison_it_could_not_make_ok(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A rule that is infinite wherever it is evaluated cannot be compared with sympy: check
    says so ('not checked'), never 'ok'."""
    from conftest import run_cli

    (tmp_path / "r.exg").write_text("def f(x):\n    t = x * x\n    grad x = dout / 0\n"
                                    "    return t\n")
    result = run_cli("check", "r.exg", cwd=tmp_path)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stdout.splitlines()
             if "numeric" in line and not line[:1].isdigit()]
    assert lines and all(line.startswith("skipped") for line in lines), result.stdout
    assert "0 ok" in result.stdout and "not checked" in result.stdout
    assert result.returncode == 1 and "check incomplete" in result.stdout
    as_json = json.loads(run_cli("check", "r.exg", "--json", cwd=tmp_path).stdout)
    assert as_json["ok"] is False and "f d/dx" in as_json["not_checked"]


def test_check_compares_a_vector_output_as_the_gradient_of_its_sum(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """k = [x, 2x]: its gradient is d(x + 2x)/dx = 3; check compares it with sympy and
    finite differences (it used to skip such outputs and still say ok), and a wrong rule
    inside is caught."""
    from conftest import run_cli

    (tmp_path / "v.exg").write_text("def k(x):\n    return [x, 2 * x]\n"
                                    "def half(x):\n    grad x = dout\n    return x / 2\n"
                                    "def w(x):\n    return [half(x), x]\n")
    good = run_cli("check", "v.exg", "k", cwd=tmp_path)
    assert good.returncode == 0 and "not checked" not in good.stdout
    assert "symbolic" in good.stdout and "finite-diff" in good.stdout
    bad = run_cli("check", "v.exg", "w", cwd=tmp_path)
    assert bad.returncode == 1 and "MISMATCH" in bad.stdout


@pytest.mark.parametrize("rule", ["w * dout", "h(dout)", "n([dout])"])
def test_a_parameter_only_in_a_rule_is_refused_too(rule: str) -> None:
    """A rule naming a parameter (directly, through a called function or a net) is refused at
    compile time, not an internal error when the rule is used."""
    source = ("param w = 0.5\nnet n = Neuron(1)\ndef h(x):\n    return w * x\n"
              f"def f(x):\n    grad x = {rule}\n    return x\n"
              "def loss(x):\n    return f(x) * 2\n")
    with pytest.raises(ExprgradTypeError) as info:
        exprgrad.compile_source(source, "r.exg")
    assert "'f' has grad rules but uses the parameter" in str(info.value)


def test_entry_point_says_what_is_missing() -> None:
    mod = exprgrad.load_source("def zip(a, b):\n    return a * b\n")
    assert exprgrad.entry_point(mod, "zip", "value")(2.0, 3.0) == 6.0
    for function, kind, words in (("zip", "hess", "has no hess function"),
                                  ("nope", "grad", "has no def 'nope'"),
                                  ("zip", "Value", "no kind 'Value'")):
        with pytest.raises(KeyError, match=words):
            exprgrad.entry_point(mod, function, kind)
