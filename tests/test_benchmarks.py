"""benchmarks/run.py runs and its contenders pass their correctness checks (a bounded smoke run:
the seed workload, one run of one round; contenders that are not installed are skipped).
Timings are never asserted."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import pytest  # noqa: E402
import run  # noqa: E402


@pytest.mark.slow  # some 15 s with the bench extra installed (SymPy's build, JAX's process)
def test_every_contender_on_the_seed_passes_its_check_and_is_timed() -> None:
    settings = run.Settings(runs=1, rounds=1, instances=1, block=0.001, budget=0.1)
    results = run.run(["seed"], settings)
    rows = results["seed"]["contenders"]
    assert {label: row["failed"] for label, row in rows.items() if "failed" in row} == {}
    timed = [label for label, row in rows.items() if "seconds" in row]
    assert run.EXPRGRAD_SCALAR in timed and "hand-written Python" in timed
    for label in timed:
        assert abs(rows[label]["first_loss"] / rows[label]["reference_loss"] - 1) <= 1e-9


def test_the_check_catches_a_wrong_update() -> None:
    xs, ys = run.load_data("seed")
    params = run.exprgrad.load_source(run.SOURCES["seed"][0]).init_params(0)
    ref_loss, ref_params = run.reference_step("seed", params, xs, ys, 0.01)
    right = run.handwritten_python("seed", params, xs, ys, 0.01)
    assert run.check(right, ref_loss, ref_params, "float64")[1] is None
    wrong = run.handwritten_python("seed", params, xs, ys, 0.0101)  # another step size
    problem = run.check(wrong, ref_loss, ref_params, "float64")[1]
    assert problem is not None and problem.startswith("updated parameter")
