"""The REPL through a real pseudo-terminal (pexpect), and scripted through piped stdin."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect
import pytest
from conftest import ROOT, run_cli


def _spawn(history: Path) -> pexpect.spawn:
    env = dict(os.environ, EXPRGRAD_HISTORY=str(history), TERM="xterm", PYTHONPATH=str(ROOT),
               PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(sys.executable, ["-m", "exprgrad", "repl"], env=env, cwd=str(ROOT),
                          encoding="utf-8", timeout=60, dimensions=(40, 120))
    child.expect(">>>")
    return child


@pytest.fixture
def history(tmp_path: Path) -> Path:
    return tmp_path / "history"


def test_typing_defs_errors_and_grad_in_a_terminal(history: Path) -> None:
    c = _spawn(history)
    c.sendline("x = 2")
    c.expect(">>>")
    c.sendline("x * 3")
    c.expect(r"(?<![\d.])6\r\n")
    c.expect(">>>")
    c.sendline("def f(a):")  # a multi-line def: continuation prompt, ended by an empty line
    c.expect(r"\.\.\.")
    c.sendline("    b = a * a")
    c.expect(r"\.\.\.")
    c.sendline("    return b + 1")
    c.expect(r"\.\.\.")
    c.sendline("")
    c.expect(">>>")
    c.sendline("f(x) + qq")  # a mistake: reported like a file's, and the session goes on
    c.expect(r"<repl>:\d+:8: name error: 'qq' is not defined")
    c.expect(r"\^\^")
    c.expect(">>>")
    c.sendline("f(x)")
    c.expect(r"(?<![\d.])5\r\n")
    c.expect(">>>")
    c.sendline(":grad f(x) * x")  # d/dx (x^3 + x) = 3x^2 + 1 = 13
    c.expect(r"d/dx = 13\r\n")
    c.expect(">>>")
    c.sendline("y = x")
    c.expect(">>>")
    c.sendline("x = 100")  # later rebinding does not change earlier results
    c.expect(">>>")
    c.sendline("y")
    c.expect(r"(?<![\d.])2\r\n")
    c.expect(">>>")
    c.send("1 + ")
    c.sendcontrol("c")  # Ctrl-C cancels the current input
    c.expect(">>>")
    c.sendline("tan")
    c.expect(">>>")  # (an error: tan is not defined)
    c.send("tan")
    c.send("\t")  # tab completion of builtins: tan -> tanh
    c.send("(0)\r")
    c.expect(r"(?<![\d.])0\r\n")
    c.expect(">>>")
    c.sendcontrol("d")  # Ctrl-D leaves
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0


def test_history_across_sessions(history: Path) -> None:
    c = _spawn(history)
    c.sendline("7 * 6")
    c.expect(r"(?<![\d.])42\r\n")
    c.expect(">>>")
    c.sendcontrol("d")
    c.expect(pexpect.EOF)
    c = _spawn(history)
    c.send("\x1b[A")  # the up arrow recalls the last session's line
    c.send("\r")
    c.expect(r"(?<![\d.])42\r\n")
    c.expect(">>>")
    c.sendline(":quit")
    c.expect(pexpect.EOF)


def test_piped_script_runs_without_prompts(tmp_path: Path) -> None:
    script = "x = 2\ndef f(a, b):\n    return a * b + sin(a)\n\nf(x, 3)\n:grad f(x, 3)\n"
    result = run_cli("repl", input=script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert ">>>" not in result.stdout
    assert lines[0] == "6.909297427"
    assert lines[1] == "value 6.909297427"
    assert lines[2] == "  d/dx = 2.583853163"  # b + cos(a)
    assert len(lines) == 3  # 3 is a constant: the gradient is reported for x only


def test_piped_script_exits_nonzero_when_a_statement_fails() -> None:
    result = run_cli("repl", input="x = 1\ny = x +\nx * 5\n")
    assert result.returncode == 1
    assert result.stdout.strip() == "5"
    assert result.stderr.startswith("<repl>:2:")
    assert "Traceback" not in result.stderr


def test_commands_load_code_sympy_vars_reset(tmp_path: Path) -> None:
    script = (":load examples/tour.exg\n"
              "a = 0.5\nb = 2\n"
              "g(a, b)\n"
              ":code g\n"
              ":sympy a * b + exp(a)\n"
              ":vars\n"
              ":check g\n"
              f":graph a * b {tmp_path / 'ab.svg'}\n"
              ":reset\n"
              ":vars\n")
    result = run_cli("repl", input=script)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "loaded examples/tour.exg: def f, def g, def softmax2, def h" in out
    assert "-7.537882843" in out
    assert "def g_grad(a, b):" in out and "math.tanh(a)" in out
    assert "a*b + exp(a)" in out and "d/da = b + exp(a)" in out
    assert "a = 0.5" in out and "def h(x, y)" in out
    assert "ok       g" in out
    assert (tmp_path / "ab.svg").read_text().count("data") >= 3
    assert out.rstrip().endswith("forgot everything")


def test_load_starts_from_the_files_own_initial_parameters(tmp_path: Path) -> None:
    """Two random parameters and two networks: after :load, f(1) is what the file's module
    computes with init_params(0) (which eval uses), even after earlier declarations drew
    other seeds."""
    (tmp_path / "two.exg").write_text(
        "param u = uniform(-1, 1)\nparam v = uniform(-1, 1)\nnet a = Neuron(1)\n"
        "net b = Neuron(1)\n\ndef f(x):\n    return u + v * x + a([x]) + b([x])\n")
    import exprgrad

    mod = exprgrad.load(tmp_path / "two.exg")
    expected = mod.f(mod.init_params(0), 1.0)
    typed = f"param w = uniform(0, 1)\nnet c = Neuron(2)\n:load {tmp_path / 'two.exg'}\nf(1)\n"
    result = run_cli("repl", input=typed)
    assert result.returncode == 0, result.stderr
    assert abs(float(result.stdout.splitlines()[-1]) - expected) < 1e-9
