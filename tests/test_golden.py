"""Golden files: the exact generated code for the examples (review diffs by hand).

Regenerate after a deliberate change: pytest tests/test_golden.py --update-golden
"""

from __future__ import annotations

import pytest
from conftest import EXAMPLES, ROOT

import exprgrad

GOLDEN = ROOT / "tests" / "golden"
CASES = ["tour.exg", "micrograd.exg", "seed_tanh.exg", "seed_mlp.exg", "small_net.exg"]
#: numpy modules (their numpy code and its array-API twins): a network, and where/max/softmax
NUMPY_CASES = ["small_net.exg", "select.exg"]


@pytest.mark.parametrize("name, backend", [*((c, "python") for c in CASES),
                                           *((c, "numpy") for c in NUMPY_CASES)])
def test_generated_code_matches_golden(name: str, backend: str, update_golden: bool) -> None:
    source = EXAMPLES / name if (EXAMPLES / name).exists() else GOLDEN / name
    code = exprgrad.compile_source(source.read_text(encoding="utf-8"), name, backend=backend)
    suffix = "_numpy" if backend == "numpy" else ""
    golden = GOLDEN / (name.removesuffix(".exg") + suffix + ".py")
    if update_golden:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(code, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden}; run with --update-golden"
    assert code == golden.read_text(encoding="utf-8")


def test_output_is_deterministic_across_processes() -> None:
    import subprocess
    import sys

    outputs = set()
    for seed in ("0", "1", "random"):
        result = subprocess.run([sys.executable, "-m", "exprgrad", "compile",
                                 str(EXAMPLES / "seed_mlp.exg")], capture_output=True, text=True,
                                cwd=ROOT, env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin",
                                               "PYTHONPATH": str(ROOT)})
        assert result.returncode == 0, result.stderr
        outputs.add(result.stdout)
    assert len(outputs) == 1
