"""Folded non-finite constants (``log(0)``, ``1 / 0``, ``exp(1000)`` ...) run and give the value
and gradient that docs/numerics.md prescribes, through every way a user meets them: `exprgrad
eval` (text and ``--json``), a compiled module of each backend imported in a fresh process, and
the REPL on a terminal.

The expected numbers below are written from the policy and IEEE-754 arithmetic, not taken from
exprgrad: ``log(0) = -inf``, ``x / 0`` is ``±inf`` by the signs and ``0 / 0`` is ``nan``,
``sqrt`` and ``log`` below their domain are ``nan``, ``exp`` overflows to ``inf``, ``0 **
negative`` is ``inf``, a negative base to a non-integer power is ``nan``, ``sin(inf)`` is
``nan``, ``inf - inf`` is ``nan``, ``0 * inf`` at run time is ``nan``; ``x * 0`` is a strong zero
(a documented simplification); a constant does not depend on ``x``, so its derivative is ``0``.

These cases failed until commit 70d6a13, because generated code used ``math.inf`` /
``math.nan`` without ``import math`` (and numpy modules ``math.inf`` too); a failure for that
reason is reported as :class:`MissingMathImport`, any other as a plain assertion.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest
from conftest import ROOT, run_cli

inf = math.inf
nan = math.nan


class MissingMathImport(AssertionError):
    """Generated code used ``math`` without importing it (the bug fixed in 70d6a13)."""


def _check_math_import(output: str) -> None:
    if "NameError: name 'math' is not defined" in output:
        raise MissingMathImport(output[-2000:])


@dataclass(frozen=True)
class Case:
    expr: str
    #: x -> (value, df/dx); df/dx is None when the expression does not depend on x (0 in the
    #: gradient tuple, "(depends on no variable)" in the REPL)
    points: dict[float, tuple[float, float | None]]

    @property
    def id(self) -> str:
        return self.expr.replace(" ", "")


def _const(value: float) -> dict[float, tuple[float, float | None]]:
    return {2.0: (value, None), -3.0: (value, None)}


#: the whole function folds to one non-finite number
CONSTANTS = [
    Case("log(0)", _const(-inf)),
    Case("1 / 0", _const(inf)),
    Case("-1 / 0", _const(-inf)),
    Case("1 / -0", _const(-inf)),  # IEEE: -0 is negative zero; "by the signs"
    Case("0 / 0", _const(nan)),
    Case("exp(1000)", _const(inf)),
    Case("sqrt(-1)", _const(nan)),
    Case("0 ** -1", _const(inf)),
    Case("-log(0)", _const(inf)),
    Case("log(-1)", _const(nan)),
    Case("log1p(-1)", _const(-inf)),
    Case("log1p(-2)", _const(nan)),
    Case("(-8) ** 0.5", _const(nan)),
    Case("sin(exp(1000))", _const(nan)),
    Case("exp(1000) - exp(1000)", _const(nan)),
]
#: a folded non-finite constant meeting the argument at run time (IEEE arithmetic)
MIXED = [
    Case("x * log(0)", {2.0: (-inf, -inf), -3.0: (inf, -inf), 0.0: (nan, -inf)}),
    Case("log(0) + x", {2.0: (-inf, 1.0), -3.0: (-inf, 1.0)}),
    Case("x ** 2 * log(0)", {2.0: (-inf, -inf), -3.0: (-inf, inf)}),
    Case("exp(x) * exp(1000)", {0.0: (inf, inf), 1.0: (inf, inf)}),
    Case("x / log(0)", {2.0: (-0.0, -0.0), -3.0: (0.0, -0.0)}),  # zeros compared unsigned
    # x * 0 is a strong zero (docs/numerics.md, simplifications): 0 * log(0) vanishes
    Case("0 * log(0) + x", {2.0: (2.0, 1.0), -3.0: (-3.0, 1.0)}),
]
CASES = CONSTANTS + MIXED
CASE_IDS = [c.id for c in CASES]


def _same(got: float, want: float) -> bool:
    """Equal as IEEE numbers (nan matches nan; zeros match whatever their sign)."""
    return (math.isnan(got) and math.isnan(want)) or got == want


def _grad(want: float | None) -> float:
    return 0.0 if want is None else want


def _write(tmp_path: Path, case: Case) -> Path:
    path = tmp_path / "nf.exg"
    path.write_text(f"def f(x):\n    return {case.expr}\n")
    return path


def _arg(x: float) -> str:
    return f"x={x:g}"


# ---- exprgrad eval ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_eval_text(case: Case, tmp_path: Path) -> None:
    path = _write(tmp_path, case)
    for x, (value, grad) in case.points.items():
        result = run_cli("eval", path.name, "f", _arg(x), cwd=tmp_path)
        _check_math_import(result.stderr)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == 2, result.stdout
        head, _, shown_value = lines[0].partition(" = ")
        assert head == f"f(x={x:g})", lines
        label, _, shown_grad = lines[1].partition(" = ")
        assert label == "  df/dx", lines
        assert _same(float(shown_value), value), (x, lines, value)
        assert _same(float(shown_grad), _grad(grad)), (x, lines, grad)


def _json_number(v: float) -> object:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_eval_json(case: Case, tmp_path: Path) -> None:
    path = _write(tmp_path, case)
    for x, (value, grad) in case.points.items():
        result = run_cli("eval", path.name, "f", _arg(x), "--json", cwd=tmp_path)
        _check_math_import(result.stderr)
        assert result.returncode == 0, result.stderr
        got = json.loads(result.stdout)  # strict JSON: no NaN / Infinity tokens
        want = {"function": "f", "value": _json_number(value),
                "grad": {"x": _json_number(_grad(grad))}}
        assert got == want, (x, result.stdout)
        assert "NaN" not in result.stdout and "Infinity" not in result.stdout


# ---- compiled modules, imported for real in a fresh process ----------------------------------

CALL_PYTHON = """
import json, sys
import nf_out
rows = []
for x in json.loads(sys.argv[1]):
    value = nf_out.f(x)
    value2, grads = nf_out.f_grad(x)
    rows.append([repr(value), repr(value2), repr(grads[0])])
print(json.dumps(rows))
"""

CALL_NUMPY = """
import json, sys
import numpy as np
import nf_out
xs = np.array(json.loads(sys.argv[1]), dtype=np.float64)
values = nf_out.f(xs)
values2, grads = nf_out.f_grad(xs)
assert values.shape == values2.shape == grads[0].shape == xs.shape, (values, values2, grads)
print(json.dumps([[repr(float(a)), repr(float(b)), repr(float(c))]
                  for a, b, c in zip(values, values2, grads[0])]))
"""


def _compiled(case: Case, tmp_path: Path, backend: str) -> None:
    path = _write(tmp_path, case)
    out = tmp_path / "nf_out.py"
    compiled = run_cli("compile", path.name, "-o", out.name, "--backend", backend, cwd=tmp_path)
    assert compiled.returncode == 0, compiled.stderr
    points = list(case.points)
    # a fresh interpreter, exprgrad not on the path: the module needs only math (or numpy)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", CALL_NUMPY if backend == "numpy" else
                          CALL_PYTHON, json.dumps(points)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    _check_math_import(run.stderr)
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    for x, (value_f, value_g, grad) in zip(points, rows):
        want_value, want_grad = case.points[x]
        assert _same(float(value_f), want_value), (x, value_f, want_value)
        assert _same(float(value_g), want_value), (x, value_g, want_value)
        assert _same(float(grad), _grad(want_grad)), (x, grad, want_grad)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_compiled_python_module(case: Case, tmp_path: Path) -> None:
    _compiled(case, tmp_path, "python")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_compiled_numpy_module(case: Case, tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    _compiled(case, tmp_path, "numpy")


# ---- the REPL on a terminal ------------------------------------------------------------------

NUMBER = r"(-?inf|nan|-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"
FAILED = r"internal error|Traceback \(most recent call last\)"
#: a printed value follows a line end or a terminal escape, never a digit, "." or the ")" that
#: ends the echo of a typed (parenthesized) expression
ECHO_NOT_OUTPUT = r"(?<![\d.)])"


def _expect_number(c: pexpect.spawn, prefix: str) -> float:
    index = c.expect([prefix + NUMBER + r"\r\n", FAILED, pexpect.EOF])
    if index == 1:  # a bug report (or, before exprgrad reported bugs, a traceback): read it all
        first = c.after
        c.expect([">>>", pexpect.EOF])
        report = f"{first}{c.before}"
        _check_math_import(report)
        raise AssertionError(f"exprgrad failed:\n{report}")
    assert index == 0, f"no {prefix!r} line; the session printed:\n{c.before}"
    return float(c.match.group(1))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_repl(case: Case, tmp_path: Path) -> None:
    env = dict(os.environ, EXPRGRAD_HISTORY=str(tmp_path / "history"), TERM="xterm",
               PYTHONPATH=str(ROOT), PROMPT_TOOLKIT_NO_CPR="1")
    c = pexpect.spawn(sys.executable, ["-m", "exprgrad", "repl"], env=env, cwd=str(tmp_path),
                      encoding="utf-8", timeout=60, dimensions=(40, 200))
    c.expect(">>>")
    try:
        for x, (value, grad) in case.points.items():
            c.sendline(f"x = {x!r}")
            c.expect(">>>")
            c.sendline(f"({case.expr})")  # printed at once; the echo ends in ")", not a number
            got = _expect_number(c, ECHO_NOT_OUTPUT)
            assert _same(got, value), (x, got, value)
            c.expect(">>>")
            c.sendline(f":grad {case.expr}")
            assert _same(_expect_number(c, "value "), value), x
            if grad is None:
                c.expect(r"\(depends on no variable")
            else:
                assert _same(_expect_number(c, "d/dx = "), grad), (x, grad)
            c.expect(">>>")
        c.sendline("(x * 10 + 1)")  # the session goes on
        last = list(case.points)[-1]
        assert _same(_expect_number(c, ECHO_NOT_OUTPUT), last * 10 + 1)
        c.expect(">>>")
        c.sendcontrol("d")
        c.expect(pexpect.EOF)
    finally:
        c.close(force=True)
    assert c.exitstatus == 0
