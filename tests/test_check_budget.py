"""`exprgrad check --budget S` bounds the whole run's sympy work: what it leaves is reported as
not checked (never ok), finite differences still run, and a bad budget is a usage error."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

CHAIN = "def f(x):\n" + "    x = x * x + x\n" * 13 + "    return x\n"
SMOOTH = "def g(x):\n" + "    x = sin(x) * 0.5 + x\n" * 13 + "    return x\n"


def test_a_spent_budget_is_reported_not_passed(tmp_path: Path) -> None:
    (tmp_path / "c.exg").write_text(CHAIN + SMOOTH)
    result = run_cli("check", "c.exg", "--budget", "0.5", cwd=tmp_path)
    lines = result.stdout.splitlines()
    spent = [line for line in lines if "the time budget (0.5 s, --budget) was spent" in line]
    assert spent and all(line.startswith("skipped") for line in spent), result.stdout
    # g's finite differences still ran and passed; f's values overflow: nothing checked f
    assert any(line.startswith("ok") and " g " in line and "finite-diff" in line
               for line in lines), result.stdout
    assert result.returncode == 1 and "f d/dx" in result.stdout


@pytest.mark.parametrize("budget", ["nan", "inf", "-5", "0"])
def test_a_bad_budget_is_a_usage_error(tmp_path: Path, budget: str) -> None:
    (tmp_path / "c.exg").write_text(SMOOTH)
    result = run_cli("check", "c.exg", "--budget", budget, cwd=tmp_path)
    assert result.returncode == 2 and "the time budget is a positive number" in result.stderr
    assert "Traceback" not in result.stderr
