"""Training progress on a real terminal (tqdm through a pty, at two widths), in a log, and Ctrl-C
during training writing --save and --plot with what was trained."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pexpect
import pytest
from conftest import ROOT, run_cli

LONG = """\
net n = MLP(3, [4, 4, 1])
data xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
data ys = [1.0, -1.0, -1.0, 1.0]
def loss(x[3], y):
    return (n(x) - y) ** 2
train loss(xs, ys): lr=0.01, steps=100000000
"""

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _spawn(args: list[str], cwd: Path, columns: int) -> pexpect.spawn:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TERM="xterm", COLUMNS=str(columns))
    return pexpect.spawn(sys.executable, ["-m", "exprgrad", *args], env=env, cwd=str(cwd),
                         encoding="utf-8", timeout=120, dimensions=(24, columns))


@pytest.mark.parametrize("columns", [60, 120])
def test_the_bar_fits_the_terminal_and_shows_eta_rate_and_loss(tmp_path: Path,
                                                               columns: int) -> None:
    c = _spawn(["train", str(ROOT / "examples/seed_mlp.exg"), "--steps", "3000"], tmp_path,
               columns)
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0
    frames = [f for f in re.split(r"[\r\n]+|\x1b\[[0-9;?]*[A-Za-z]", c.before) if "/3000" in f]
    bars = [f for f in frames if re.search(r"\d+/3000 \[", f)]
    assert bars, c.before[-2000:]
    last = bars[-1]
    assert "3000/3000" in last and "100%" in last
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d", last)  # elapsed < ETA
    # the loss comes first, whole (a narrow line cuts the bar, never its digits)
    assert re.match(r"loss -?\d(\.\d+)?(e-?\d+)? ", last), last
    assert ("step/s" in last) == (columns >= 80)  # the rate where the width allows
    assert all(len(f.rstrip()) <= columns for f in bars), [len(f) for f in bars]


def test_a_log_gets_a_line_per_tenth_and_quiet_gets_nothing() -> None:
    logged = run_cli("train", "examples/seed_mlp.exg", "--steps", "100")
    assert logged.returncode == 0
    lines = [line for line in logged.stderr.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == [f"{k}/100" for k in range(10, 101, 10)]
    quiet = run_cli("train", "examples/seed_mlp.exg", "--steps", "100", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_ctrl_c_stops_cleanly_and_writes_what_was_trained(tmp_path: Path) -> None:
    (tmp_path / "long.exg").write_text(LONG)
    c = _spawn(["train", "long.exg", "--save", "p.json", "--plot", "loss.svg"], tmp_path, 120)
    c.expect(r"\d+/100000000 \[")
    c.expect(r"\d{3,}/100000000 \[")  # a few hundred steps in
    c.sendintr()
    c.expect(r"interrupted during step (\d+): kept the parameters of the (\d+) whole step")
    c.expect(r"wrote --save p.json and --plot loss.svg")
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 130
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["steps"] >= 100 and len(saved["params"]) == 41
    # the final loss saved is the loss of the parameters saved (after the last whole step)
    import exprgrad

    module = exprgrad.load(tmp_path / "long.exg")
    flat = [saved["params"][name] for name in module.PARAM_NAMES]
    xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
    total = sum(module.loss(flat, x, y) for x, y in zip(xs, [1.0, -1.0, -1.0, 1.0]))
    assert saved["final_loss"] == pytest.approx(total, rel=1e-12)
    svg = (tmp_path / "loss.svg").read_text()
    assert "<!-- exprgrad loss curve -->" in svg and f"{saved['steps']} steps" in svg
    # the saved parameters are the trained ones: predict with them beats the initial loss
    predicted = run_cli("predict", "long.exg", "--params", "p.json", "--json", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr


def test_ctrl_c_with_json_still_prints_one_object(tmp_path: Path) -> None:
    (tmp_path / "long.exg").write_text(LONG.replace("steps=100000000", "steps=2000000"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    c = pexpect.spawn(sys.executable, ["-m", "exprgrad", "train", "long.exg", "--json", "--save",
                                       "p.json"], env=env, cwd=str(tmp_path), encoding="utf-8",
                      timeout=120)
    import time

    time.sleep(3)  # --json shows no progress: give it time to start training
    c.sendintr()
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 130
    line = next(x for x in c.before.splitlines() if x.startswith("{"))
    summary = json.loads(line)
    assert summary["stopped"].startswith("interrupted during step") and summary["steps"] > 0
    assert summary["save"] == "p.json" and (tmp_path / "p.json").exists()
