"""Unpacking (``a, b = f(x)``, ``a, b = v``, ``a, b = b, a``) and for loops typed in the REPL:
values against numbers computed here, gradients against hand derivatives and central
differences, located errors, a failing statement that leaves the session as it was (a mistake
in a late iteration, Ctrl-C), loaded files' constants as bounds, drawings, a real terminal, and
the Jupyter cell magic."""

from __future__ import annotations

import io
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest
from conftest import ROOT

import exprgrad.lower.session as session_module
from exprgrad.ui.repl import Session, run_script


def _session(text: str) -> tuple[Session, list[str], list[str], int]:
    out: list[str] = []
    err: list[str] = []
    s = Session(out=out.append, err=err.append)
    code = run_script(s, io.StringIO(text))
    return s, out, err, code


def _value(s: Session, name: str) -> Any:
    return s.env.value(s.env.bindings[name])


def _grads(s: Session, name: str) -> dict[str, Any]:
    """d name / d every named value and leaf in its history, by label."""
    return {p.label: session_module.nest(p.grad, p.node.shape)
            for p in s.env.gradient(s.env.bindings[name])}


def _rk4(x: float, k: float, n: int = 4, h: float = 0.1) -> float:
    for _ in range(n):
        k1 = -k * x
        k2 = -k * (x + h / 2 * k1)
        k3 = -k * (x + h / 2 * k2)
        k4 = -k * (x + h * k3)
        x += h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


# ---- unpacking -------------------------------------------------------------------------------

def test_unpacking_a_defs_results_binds_values_with_history() -> None:
    s, out, err, code = _session(
        "x = 1.5\ny = -0.5\n"
        "def polar(a, b):\n    return hypot(a, b), atan2(b, a)\n\n"
        "r, t = polar(x, y)\nr\nt\n")
    assert code == 0, err
    r, t = math.hypot(1.5, -0.5), math.atan2(-0.5, 1.5)
    assert _value(s, "r") == pytest.approx(r, rel=1e-15)
    assert _value(s, "t") == pytest.approx(t, rel=1e-15)
    assert out == [f"{r:.10g}", f"{t:.10g}"]
    # dr/dx = x / r, dr/dy = y / r; dt/dx = -y / r^2, dt/dy = x / r^2
    gr, gt = _grads(s, "r"), _grads(s, "t")
    assert gr["r"] == 1 and gt["t"] == 1
    assert gr["x"] == pytest.approx(1.5 / r, rel=1e-14)
    assert gr["y"] == pytest.approx(-0.5 / r, rel=1e-14)
    assert gt["x"] == pytest.approx(0.5 / r ** 2, rel=1e-14)
    assert gt["y"] == pytest.approx(1.5 / r ** 2, rel=1e-14)
    # a later expression of both: d(r * t)/dr = t, through the named intermediates
    s.feed("p = r * t", 20)
    gp = _grads(s, "p")
    assert gp["r"] == pytest.approx(t, rel=1e-15) and gp["t"] == pytest.approx(r, rel=1e-15)


def test_unpacking_a_vector_a_tuple_and_a_swap() -> None:
    s, out, err, code = _session(
        "a, b = [1, 2]\nv = [3.0, 4.0]\nc, d = v\n"
        "a, b = b, a\n"          # both sides read before either name is bound
        "e, f, = a * c, b + d\n"
        "a\nb\ne\nf\n")
    assert code == 0, err
    assert out == ["2", "1", "6", "5"]
    # a and b are numbers typed in (leaves), as 'a = 1' would be; c and d have v's history
    assert _grads(s, "e") == {"e": 1, "c": 2, "v": [2, 0], "b (line 1)": 3}
    assert _grads(s, "f") == {"f": 1, "d": 1, "v": [0, 1], "a (line 1)": 1}


@pytest.mark.parametrize("text, where, message", [
    ("def two(a):\n    return a, 2 * a\n\nx = 1\np, q, r = two(x)\n", "<repl>:5:1:",
     "'two' returns 2 values, not 3"),
    ("x = 1\np, q = x\n", "<repl>:2:1:", "2 names need 2 values"),
    ("p, q = [1, 2, 3]\n", "<repl>:1:1:", "not a vector [3]"),
    ("p, q = 1, 2, 3\n", "<repl>:1:1:", "2 names and 3 values"),
    ("def two(a):\n    return a, 2 * a\n\ntwo(1)\n", "<repl>:4:1:", "unpack them"),
    ("def two(a):\n    return a, 2 * a\n\np, two = 1, 2\n", "<repl>:4:1:",
     "'two' is already the name of a function"),
])
def test_unpacking_mistakes_are_located_and_bind_nothing(text: str, where: str, message: str
                                                         ) -> None:
    s, _, err, code = _session("p = 7\n" + text.replace("<repl>", ""))
    assert code == 1 and len(err) == 1
    line = int(where.split(":")[1]) + 1  # (the 'p = 7' line first)
    assert err[0].startswith(f"<repl>:{line}:"), err[0]
    assert message in err[0] and "^" in err[0]
    assert _value(s, "p") == 7 and "q" not in s.env.bindings


# ---- for loops -------------------------------------------------------------------------------

def test_a_loop_accumulates_and_remembers_its_history() -> None:
    s, out, err, code = _session(
        "x = 2.0\ns = 0\nfor i in range(4):\n    s += i * x\n\ns\ni\n:grad s\n")
    assert code == 0, err
    assert out[:2] == ["12", "3"]  # 0x + 1x + 2x + 3x; i is left at 3, as in Python
    # one line per binding of s, each iteration's named after it, and ds/dx = 0 + 1 + 2 + 3
    assert out[2:] == ["s = 12", "  ds/ds = 1", "  ds/ds (line 4, i=2) = 1",
                       "  ds/ds (line 4, i=1) = 1", "  ds/ds (line 4, i=0) = 1",
                       "  ds/ds (line 2) = 1", "  ds/dx = 6"]


def test_rk4_typed_at_the_prompt_and_its_gradient_by_central_differences() -> None:
    script = ("x = 1.5\nk = 0.5\nx0 = x\nh = 0.1\n"
              "for n in range(4):\n"
              "    k1 = -k * x\n"
              "    k2 = -k * (x + h / 2 * k1)\n"
              "    k3 = -k * (x + h / 2 * k2)\n"
              "    k4 = -k * (x + h * k3)\n"
              "    x += h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)\n"
              "\nx\n")
    s, out, err, code = _session(script)
    assert code == 0, err
    assert _value(s, "x") == pytest.approx(_rk4(1.5, 0.5), rel=1e-14)
    g = _grads(s, "x")
    eps = 1e-6
    assert g["x (line 1)"] == pytest.approx((_rk4(1.5 + eps, 0.5) - _rk4(1.5 - eps, 0.5))
                                            / (2 * eps), rel=1e-8)
    assert g["k"] == pytest.approx((_rk4(1.5, 0.5 + eps) - _rk4(1.5, 0.5 - eps)) / (2 * eps),
                                   rel=1e-7)
    assert g["h"] == pytest.approx((_rk4(1.5, 0.5, h=0.1 + eps) - _rk4(1.5, 0.5, h=0.1 - eps))
                                   / (2 * eps), rel=1e-7)
    # the named values of the last step keep their names; earlier ones say which step
    assert "k1" in g and "k1 (line 6, n=2)" in g and "x (line 10, n=0)" in g


def test_nested_loops_with_an_outer_variable_as_bound() -> None:
    s, _, err, code = _session(
        "v = [1.0, -2.0, 0.5, 3.0]\ns = 0\n"
        "for i in range(1, 5):\n"
        "    for j in range(i):\n"
        "        s += v[i - 1] * v[j] * i\n"
        "\n")
    assert code == 0, err
    v = [1.0, -2.0, 0.5, 3.0]

    def tri(v: list[float]) -> float:
        return sum(v[i - 1] * v[j] * i for i in range(1, 5) for j in range(i))

    assert _value(s, "s") == tri(v)
    grad = _grads(s, "s")["v"]
    for m in range(4):
        up, down = list(v), list(v)
        up[m] += 1e-6
        down[m] -= 1e-6
        assert grad[m] == pytest.approx((tri(up) - tri(down)) / 2e-6, rel=1e-8)
    assert (_value(s, "i"), _value(s, "j")) == (4, 3)


def test_a_loop_calls_defs_unpacks_and_uses_a_loaded_files_constant(tmp_path: Path) -> None:
    lib = tmp_path / "lib.exg"
    lib.write_text("N = 3\n\ndef cell(x, h):\n    return tanh(x + h), x * h\n")
    s, out, err, code = _session(
        f":load {lib}\nx = 0.5\nh = 0.0\nt = 0\n"
        "for i in range(N):\n    h, p = cell(x * i, h)\n    t += p\n\nh\nt\n")
    assert code == 0, err
    assert out[0] == f"loaded {lib}: constant N, def cell"

    def run(x: float) -> tuple[float, float]:
        h, t = 0.0, 0.0
        for i in range(3):
            h, p = math.tanh(x * i + h), x * i * h
            t += p
        return h, t

    assert (_value(s, "h"), _value(s, "t")) == pytest.approx(run(0.5), rel=1e-15)
    eps = 1e-6
    assert _grads(s, "t")["x"] == pytest.approx((run(0.5 + eps)[1] - run(0.5 - eps)[1])
                                                / (2 * eps), rel=1e-8)
    assert _grads(s, "h")["x"] == pytest.approx((run(0.5 + eps)[0] - run(0.5 - eps)[0])
                                                / (2 * eps), rel=1e-8)


def test_loading_a_file_with_constants_and_redefining_one() -> None:
    s, out, err, code = _session(":load examples/lstm.exg\nT\n:vars\n")
    assert code == 0, err
    assert out[0].startswith("loaded examples/lstm.exg: constant T, layer LSTMCell, net cell1")
    assert out[2] == "4" and "T = 4 (constant)" in out


def test_a_redefined_constant_recompiles_the_defs_that_read_it(tmp_path: Path) -> None:
    (tmp_path / "a.exg").write_text("N = 3\ndef f(x):\n    s = 0\n    for i in range(N):\n"
                                    "        s += x\n    return s\n")
    (tmp_path / "b.exg").write_text("N = 5\n")
    _, out, err, code = _session(f":load {tmp_path / 'a.exg'}\nf(2)\n:load {tmp_path / 'b.exg'}"
                                 "\nf(2)\n")
    assert code == 0, err
    assert out[1] == "6" and out[-1] == "10"
    assert f"redefined constant 'N' (the old one came from {tmp_path / 'a.exg'}" in out[3]
    assert "'f' now uses the new N" in out


@pytest.mark.parametrize("loop, message", [
    ("for i in range(n):\n    s += x\n", "a loop bound must be a whole number known at compile "
     "time"),
    ("for i in range(2.5):\n    s += x\n", "a loop bound must be a whole number"),
    ("for i in range(3):\n    return s\n", "'return' belongs in a def"),
    ("for i in range(3):\n    grad x = 1\n", "'grad' belongs in a def"),
    ("for f in range(3):\n    s += x\n", "'f' is already the name of a function"),
    ("for i in range(10 ** 7):\n    s += x\n", "this for loop unrolls into more than 1000000 "
     "statements (exprgrad.limits.MAX_UNROLLED_STATEMENTS)"),
    ("for i in range(3):\n    for j in range(1, 2):\n        a, b = x\n", "2 names need 2 "
     "values"),
    # a mistake in the third iteration only: the first two are undone too
    ("for i in range(3):\n    s += x\n    q = i\n    s += v[i]\n", "index 2 is out of range"),
])
def test_a_failing_loop_is_located_and_changes_nothing(loop: str, message: str) -> None:
    setup = "def f(a):\n    return a\n\nx = 2.0\nn = 3\nv = [1, 2]\ns = 1\n"
    s, out, err, code = _session(setup + loop + "\ns\n:vars\n")
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("<repl>:"), err[0]
    line = int(err[0].split(":")[1])
    assert line > setup.count("\n") and message in err[0] and "^" in err[0], err[0]
    assert out[0] == "1"
    assert out[1:] == ["x = 2", "n = 3", "v = [1, 2]", "s = 1", "def f(a)"]
    assert len(s.env.labels) == 4 and not s.env.where  # x, n, v, s; nothing from the loop


def test_ctrl_c_in_a_loop_undoes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    s, _, _, _ = _session("x = 2.0\ns = 1\n")
    before = (dict(s.env.bindings), dict(s.env.labels))
    calls = []
    interpret = session_module.interpret

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return interpret(*args, **kwargs)

    monkeypatch.setattr(session_module, "interpret", interrupted)
    assert not s.feed("for i in range(10):\n    s += x\n    t = s\n", 3)
    assert len(calls) == 5
    assert (s.env.bindings, s.env.labels) == before and "t" not in s.env.bindings
    monkeypatch.setattr(session_module, "interpret", interpret)
    assert s.feed("for i in range(10):\n    s += x\n", 6)
    assert _value(s, "s") == 21


def test_a_loops_drawing_names_each_iteration(tmp_path: Path) -> None:
    dot = tmp_path / "s.dot"
    _, _, err, code = _session(f"x = 2.0\ns = 0\nfor i in range(3):\n    s += i * x\n\n"
                               f":graph s {dot}\n")
    assert code == 0, err
    text = dot.read_text()
    values = {name: (float(d), float(g)) for name, d, g in re.findall(
        r'label="\{ ([^|{}"]+?) \| data (\S+) \| grad (\S+) \}"', text)}
    assert values == {"x": (2, 3), "s (line 2)": (0, 1), "s (line 4, i=0)": (0, 1),
                      "s (line 4, i=1)": (2, 1), "s": (6, 1)}


def test_loops_and_unpacking_in_a_real_terminal(tmp_path: Path) -> None:
    env = dict(os.environ, EXPRGRAD_HISTORY=str(tmp_path / "history"), TERM="xterm",
               PYTHONPATH=str(ROOT), PROMPT_TOOLKIT_NO_CPR="1")
    c = pexpect.spawn(sys.executable, ["-m", "exprgrad", "repl"], env=env, cwd=str(ROOT),
                      encoding="utf-8", timeout=60, dimensions=(40, 160))
    c.expect(">>>")
    c.sendline("x = 3.0")
    c.expect(">>>")
    c.sendline("s = 0")
    c.expect(">>>")
    c.sendline("for i in range(1, 4):")  # a block: continuation prompts to an empty line
    c.expect(r"\.\.\.")
    c.sendline("    for j in range(i):")
    c.expect(r"\.\.\.")
    c.sendline("        s += x ** i")
    c.expect(r"\.\.\.")
    c.sendline("")
    c.expect(">>>")
    c.sendline("s")  # 1 * 3 + 2 * 9 + 3 * 27
    c.expect(r"(?<![\d.])102\r\n")
    c.expect(">>>")
    c.sendline(":grad s")  # 1 + 2 * 2x + 3 * 3x^2 = 1 + 12 + 81
    c.expect(r"ds/dx = 94\r\n")
    c.expect(">>>")
    c.sendline("for i in range(3):")  # fails in its last iteration: nothing of it stays
    c.expect(r"\.\.\.")
    c.sendline("    s += [1, 2][i]")
    c.expect(r"\.\.\.")
    c.sendline("")
    c.expect(r"<repl>:\d+:\d+: type error: index 2 is out of range")
    c.expect(">>>")
    c.sendline("s")
    c.expect(r"(?<![\d.])102\r\n")
    c.expect(">>>")
    c.sendline("a, b = s, x")
    c.expect(">>>")
    c.sendline("a, b = b, a")
    c.expect(">>>")
    c.sendline("a - b")
    c.expect(r"(?<![\d.])-99\r\n")
    c.expect(">>>")
    c.sendcontrol("d")
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0


def test_the_jupyter_magic_compiles_cells_with_loops_and_unpacking() -> None:
    """A ``%%exprgrad`` cell is compiled as a file (it shares nothing with a REPL session):
    constants, loops and unpacking inside defs work there as in files."""
    from exprgrad.ui.jupyter import exprgrad_magic

    class Shell:
        def __init__(self) -> None:
            self.user_ns: dict[str, Any] = {}

    cell = ("N = 3\n\ndef two(x):\n    return x, x * x\n\n"
            "def f(x):\n    s = 0\n    for i in range(N):\n        a, b = two(x + i)\n"
            "        s += a * b\n    return s\n")
    shell = Shell()
    exprgrad_magic(shell, "m", cell)
    # s = x^3 + (x + 1)^3 + (x + 2)^3, ds/dx = 3 (x^2 + (x + 1)^2 + (x + 2)^2)
    assert shell.user_ns["f"](2.0) == 8 + 27 + 64
    assert shell.user_ns["f_grad"](2.0) == (99.0, (3 * (4 + 9 + 16),))
