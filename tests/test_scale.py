"""Large programs compile and run: every traversal is iterative and the emitter writes one
operation per statement. Run in subprocesses so a crash could not take the test runner down."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPT = """
import sys
from exprgrad import load_source
kind, n = sys.argv[1], int(sys.argv[2])
if kind == "chain":
    src = "def f(x):\\n" + "    x = sin(x)\\n" * n + "    return x\\n"
else:
    src = "def f(x):\\n    return " + " + ".join(["x"] * n) + "\\n"
mod = load_source(src, "big.exg")
value, (grad,) = mod.f_grad(0.5)
print(repr(value), repr(grad))
"""


def _run(kind: str, n: int) -> tuple[float, float]:
    result = subprocess.run([sys.executable, "-c", SCRIPT, kind, str(n)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    value, grad = (float(v) for v in result.stdout.split())
    return value, grad


def test_chain_of_10000_sin() -> None:
    import math

    value, grad = _run("chain", 10_000)
    x, d = 0.5, 1.0
    for _ in range(10_000):
        d *= math.cos(x)
        x = math.sin(x)
    assert value == pytest.approx(x, rel=1e-12) and grad == pytest.approx(d, rel=1e-9)


@pytest.mark.slow
def test_sum_of_100000_terms() -> None:
    value, grad = _run("sum", 100_000)
    assert value == 50_000.0 and grad == 100_000.0
