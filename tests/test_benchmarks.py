"""benchmarks/run.py runs and its contenders pass their correctness checks (a bounded smoke run:
the seed workload, one run of one round; contenders that are not installed are skipped);
benchmarks/compile_scale.py runs at tiny sizes. Timings are never asserted."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import compile_scale  # noqa: E402
import pytest  # noqa: E402
import run  # noqa: E402

import exprgrad  # noqa: E402


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


def test_compile_scale_substitutes_the_sizes_and_prints_its_table(capsys) -> None:  # type: ignore[no-untyped-def]
    lstm = exprgrad.load_source(compile_scale.lstm_source(2), "lstm.exg")
    assert lstm.FUNCTIONS["predict"] == ("xs",) and "T = 2" in compile_scale.lstm_source(2)
    params = lstm.init_params(0)
    assert lstm.predict(params, [[0.5], [0.0]]) != lstm.predict(params, [[0.0], [0.5]])
    rk4 = exprgrad.load_source(compile_scale.rk4_source(1), "rk4.exg")
    # one RK4 step of size h = 0.25 on s' = A s, A = [[0, 1], [-4, -0.5]]: x is the (0, 0)
    # entry of 1 + hA + (hA)^2/2 + (hA)^3/6 + (hA)^4/24, those of A^2, A^3, A^4 being -4, 2, 15
    x, v = rk4.flow([1.0, 0.0], 4.0)
    assert abs(x - (1 - 0.5 * 4 * 0.25 ** 2 + 4 * 0.5 * 0.25 ** 3 / 6
                    + (16 - 4 * 0.25) * 0.25 ** 4 / 24)) < 1e-12
    assert not any(line.startswith(("data", "train"))
                   for line in compile_scale.rk4_source(1).splitlines())

    assert compile_scale.main(["--sizes", "2", "1", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| example | steps | source lines |") and len(lines) == 6
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [(c[0], c[1]) for c in cells] == [("lstm (T steps)", "1"), ("lstm (T steps)", "2"),
                                             ("rk4 (N steps)", "1"), ("rk4 (N steps)", "2")]
    for small, large in (cells[0:2], cells[2:4]):
        assert small[2] == large[2]  # the source does not grow with the loop
        assert int(small[4].replace(",", "")) < int(large[4].replace(",", ""))
        assert large[7] == "1.00 / 1.00"
