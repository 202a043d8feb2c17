"""The real package: a wheel built from the repository, installed into a fresh virtualenv and
used from another directory, finds its grammar; a compiled module runs without exprgrad."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.slow


def _run(*cmd: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_wheel_in_fresh_virtualenv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT),
         cwd=tmp_path)
    wheels = list(dist.glob("exprgrad-*.whl"))
    assert len(wheels) == 1
    import zipfile

    assert "exprgrad/grammar/exprgrad.lark" in zipfile.ZipFile(wheels[0]).namelist()
    env = tmp_path / "env"
    venv.create(env, with_pip=True)
    py = str(env / "bin" / "python")
    _run(py, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheels[0]),
         cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "tour.exg").write_text((EXAMPLES / "tour.exg").read_text())
    out = _run(str(env / "bin" / "exprgrad"), "eval", "tour.exg", "g", "a=0.5", "b=2", "--json",
               cwd=elsewhere)
    assert '"b": -12.0' in out.stdout
    # the wheel ships the examples; moons trains on the numpy backend (numpy is a dependency)
    _run(str(env / "bin" / "exprgrad"), "examples", "ex", cwd=elsewhere)
    trained = _run(str(env / "bin" / "exprgrad"), "train", "ex/moons.exg", "--json",
                   cwd=elsewhere)
    import json

    summary = json.loads(trained.stdout)
    assert summary["backend"] == "numpy" and summary["accuracy"] >= 0.97, summary
    probe = _run(py, "-c", "import exprgrad, exprgrad.syntax.parser as p; print(p.__file__); "
                 "print(len(p.grammar_text()))", cwd=elsewhere)
    assert str(env) in probe.stdout.splitlines()[0]  # the installed copy, not the repository


def test_compiled_module_runs_without_exprgrad(tmp_path: Path) -> None:
    env = tmp_path / "bare"
    venv.create(env, with_pip=False)
    py = str(env / "bin" / "python")
    compiled = tmp_path / "seed_mlp.py"
    _run(sys.executable, "-m", "exprgrad", "compile", str(EXAMPLES / "seed_mlp.exg"), "-o",
         str(compiled), cwd=ROOT)
    script = ("import seed_mlp\n"
              "try:\n    import exprgrad\n    raise SystemExit('exprgrad is importable')\n"
              "except ImportError:\n    pass\n"
              "p = seed_mlp.init_params(0)\n"
              "v, g = seed_mlp.loss_grad(p, [2.0, 3.0, -1.0], 1.0)\n"
              "print(len(g), v > 0)\n")
    (tmp_path / "probe.py").write_text(script)
    out = _run(py, "probe.py", cwd=tmp_path)
    assert out.stdout.split() == ["41", "True"]
