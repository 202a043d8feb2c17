"""The seed notebook in the REPL (issue #16), checked against the seed's own ``Value`` engine
with its tanh rule corrected (benchmarks/seed_engine.py): the walk-through, the neuron, the
20-step training loop (by hand with :backward/:step, and with ``train``), the drawing of ``L``
through Graphviz, and the session's rules (history, redefinition, globals, errors)."""

from __future__ import annotations

import io
import math
import os
import random
import re
import sys
from pathlib import Path

import pexpect
import pytest
from conftest import ROOT, run_cli

import exprgrad.lower.session as session_module
from exprgrad.ir.ops import EvalAlgebra
from exprgrad.ui import repl
from exprgrad.ui.repl import Session, run_script

sys.path.insert(0, str(ROOT / "benchmarks"))
from seed_engine import MLP, Value  # noqa: E402

WALK = "a = 2.0\nb = -3.0\nc = 10.0\ne = a*b\nd = e + c\nf = -2.0\nL = d * f\n"
NEURON = ("x1 = 2.0\nx2 = 0.0\nw1 = -3.0\nw2 = 1.0\nb = 6.8813735870195432\n"
          "x1w1 = x1*w1\nx2w2 = x2*w2\nx1w1x2w2 = x1w1 + x2w2\nn = x1w1x2w2 + b\no = tanh(n)\n")
XS = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
YS = [1.0, -1.0, -1.0, 1.0]
DATA = f"xs = {XS}\nys = {YS}\n"
FORWARD = "ypred = [n(xs[0]), n(xs[1]), n(xs[2]), n(xs[3])]\nloss = sum((ypred - ys) ** 2)\n"


def _partials(stdout: str, top: str) -> list[tuple[str, float]]:
    return [(m.group(1), float(m.group(2)))
            for m in re.finditer(rf"^  d{re.escape(top)}/d(\S+) = (\S+)$", stdout, re.M)]


def _session(text: str) -> tuple[Session, list[str], list[str], int]:
    out: list[str] = []
    err: list[str] = []
    s = Session(out=out.append, err=err.append)
    code = run_script(s, io.StringIO(text))
    return s, out, err, code


def test_walkthrough_gradients_match_the_seed_engine() -> None:
    a, b, c = Value(2.0), Value(-3.0), Value(10.0)
    e = a * b
    d = e + c
    f = Value(-2.0)
    L = d * f
    L.backward()
    result = run_cli("repl", input=WALK + ":grad L\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("L = -8\n")
    # newest first, as backpropagation visits them
    assert _partials(result.stdout, "L") == [
        ("L", 1.0), ("f", f.grad), ("d", d.grad), ("e", e.grad), ("c", c.grad), ("b", b.grad),
        ("a", a.grad)]
    assert (a.grad, b.grad, c.grad, f.grad) == (6.0, -4.0, -2.0, 4.0)  # the notebook's answers


def test_the_neuron_matches_the_seed_engine() -> None:
    x1, x2, w1, w2 = Value(2.0), Value(0.0), Value(-3.0), Value(1.0)
    b = Value(6.8813735870195432)
    x1w1 = x1 * w1
    x2w2 = x2 * w2
    x1w1x2w2 = x1w1 + x2w2
    n = x1w1x2w2 + b
    o = n.tanh()
    o.backward()
    result = run_cli("repl", input=NEURON + ":grad o\n")
    assert result.returncode == 0, result.stderr
    got = dict(_partials(result.stdout, "o"))
    expected = {"o": 1.0, "n": n.grad, "x1w1x2w2": x1w1x2w2.grad, "x2w2": x2w2.grad,
                "x1w1": x1w1.grad, "b": b.grad, "w2": w2.grad, "w1": w1.grad, "x2": x2.grad,
                "x1": x1.grad}
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert got["x1"] == pytest.approx(-1.5) and got["w1"] == pytest.approx(1.0)
    assert got["x2"] == pytest.approx(0.5) and got["w2"] == pytest.approx(0.0, abs=1e-12)


def _reference_losses(steps: int, lr: float) -> list[float]:
    """The notebook's loop on the seed engine, from exprgrad's initial weights (seed 0 draws
    what random.seed(0) and the seed's classes draw)."""
    random.seed(0)
    net = MLP(3, [4, 4, 1])
    losses = []
    for _ in range(steps):
        ypred = [net(x) for x in XS]
        loss = sum((yout - ygt) ** 2 for ygt, yout in zip(YS, ypred))
        for p in net.parameters():
            p.grad = 0.0
        loss.backward()
        for p in net.parameters():
            p.data += -lr * p.grad
        losses.append(loss.data)
    return losses


def test_the_notebook_training_loop_by_hand_matches_the_seed_engine() -> None:
    script = "net n = MLP(3, [4, 4, 1])\n" + DATA + (FORWARD + "loss\n:backward loss\n"
                                                     ":step 0.05\n") * 20
    result = run_cli("repl", input=script)
    assert result.returncode == 0, result.stderr
    losses = [float(line) for line in result.stdout.splitlines()
              if re.fullmatch(r"-?[\d.]+(e-?\d+)?", line)]
    reference = _reference_losses(20, 0.05)
    assert losses == pytest.approx(reference, rel=1e-9)
    assert losses[-1] < 0.1 < losses[0]  # it trains (the seed's own loop climbed to 8)
    assert result.stdout.count("updated 41 parameter element(s) of net n (lr 0.05)") == 20


def test_train_in_the_session_updates_the_parameters() -> None:
    script = ("net n = MLP(3, [4, 4, 1])\n" + DATA + "def sqerr(x[3], y):\n"
              "    return (n(x) - y) ** 2\n\ntrain sqerr(xs, ys): steps=20, lr=0.05\n" + FORWARD
              + "loss\n")
    result = run_cli("repl", input=script)
    assert result.returncode == 0, result.stderr
    steps = [float(m.group(1)) for m in re.finditer(r"^step \d+: loss (\S+)$", result.stdout,
                                                      re.M)]
    reference = _reference_losses(21, 0.05)
    assert steps == pytest.approx(reference[:20], rel=1e-9)
    assert "updated 41 parameter element(s) of net n" in result.stdout
    # the session's network now has the trained parameters: the loss after 20 steps
    assert float(result.stdout.splitlines()[-1]) == pytest.approx(reference[20], rel=1e-9)


def test_the_chain_is_drawn_through_graphviz_in_a_terminal(tmp_path: Path) -> None:
    env = dict(os.environ, EXPRGRAD_HISTORY=str(tmp_path / "history"), TERM="xterm",
               PYTHONPATH=str(ROOT), PROMPT_TOOLKIT_NO_CPR="1")
    c = pexpect.spawn(sys.executable, ["-m", "exprgrad", "repl"], env=env, cwd=str(tmp_path),
                      encoding="utf-8", timeout=60, dimensions=(40, 200))
    c.expect(">>>")
    for line in WALK.splitlines():
        c.sendline(line)
        c.expect(">>>")
    c.sendline(":grad L")
    for name, value in [("L", 1), ("f", 4), ("d", -2), ("e", -2), ("c", -2), ("b", -4),
                        ("a", 6)]:
        c.expect(rf"dL/d{name} = {value}\r\n")
    c.expect(">>>")
    c.sendline(":graph L chain.dot")
    c.expect("wrote chain.dot")
    c.expect(">>>")
    c.sendline(":graph L chain.svg")
    c.expect("wrote chain.svg")
    c.expect(">>>")
    c.sendcontrol("d")
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0
    dot = (tmp_path / "chain.dot").read_text()
    records = dict(re.findall(r'(n\d+) \[label="\{ (\w+) \| data [^|]+\| grad [^}]+\}"', dot))
    values = {name: (float(d), float(g)) for name, d, g in re.findall(
        r'label="\{ (\w+) \| data (\S+) \| grad (\S+) \}"', dot)}
    assert values == {"a": (2, 6), "b": (-3, -4), "c": (10, -2), "e": (-6, -2), "d": (4, -2),
                      "f": (-2, 4), "L": (-8, 1)}
    name_of = {node: name for node, name in records.items()}
    ops = dict(re.findall(r'(n\d+_op) \[label="([^"]+)"\]', dot))
    edges = set(re.findall(r"(n\d+(?:_op)?) -> (n\d+(?:_op)?);", dot))

    def show(x: str) -> str:
        return name_of[x] if x in name_of else f"{ops[x]}->{name_of[x[:-3]]}"

    assert {(show(a), show(b)) for a, b in edges} == {
        ("a", "*->e"), ("b", "*->e"), ("*->e", "e"), ("e", "+->d"), ("c", "+->d"),
        ("+->d", "d"), ("d", "*->L"), ("f", "*->L"), ("*->L", "L")}
    svg = (tmp_path / "chain.svg").read_text()
    assert svg.startswith("<?xml") and "data &#45;8.0000" in svg and "grad 6.0000" in svg


def test_named_intermediates_count_only_their_own_paths() -> None:
    _, out, _, code = _session("a = 3.0\nb = 5.0\ne = a*b\ng = a*b\nL = e*e + g\n:grad L\n")
    assert code == 0
    got = dict(_partials("\n".join(out), "L"))
    assert got == {"L": 1, "g": 1, "e": 30, "b": 2 * 15 * 3 + 3, "a": 2 * 15 * 5 + 5}


def test_rebinding_never_changes_history_and_says_which_binding() -> None:
    _, out, _, code = _session("x = 2\ny = x * x\nx = 10\ny\n:grad y\n:grad y * x\n")
    assert code == 0
    assert out[0] == "4"
    assert out[1:3] == ["y = 4", "  dy/dy = 1"]
    assert out[3] == "  dy/dx (line 1) = 4"
    # a new expression sees the new x and the old one through y
    assert out[4:] == ["value 40", "  d/dx = 4", "  d/dy = 10", "  d/dx (line 1) = 40"]


def test_redefinition_replaces_recompiles_callers_and_keeps_values() -> None:
    script = ("def f(a):\n    return a * 2\n\ndef g(a):\n    return f(a) + 1\n\nv = g(1)\n"
              "def f(a):\n    return a * 10\n\ng(1)\nv\n")
    _, out, err, code = _session(script)
    assert code == 0, err
    assert out[0].startswith("redefined function 'f'")
    assert out[1] == "'g' now uses the new f"
    assert out[2:] == ["11", "3"]


def test_a_def_reads_session_variables_as_leaves_and_compiles_them_as_constants() -> None:
    script = "k = 3\ndef h(a):\n    return a * k\n\nh(2)\nk = 5\nh(2)\n:grad h(2)\n:code h\n"
    _, out, err, code = _session(script)
    assert code == 0, err
    assert out[:4] == ["6", "10", "value 10", "  d/dk = 2"]
    assert "a * 5.0" in "\n".join(out[4:])


def test_a_step_uses_a_gradient_once_and_refuses_a_stale_one() -> None:
    script = ("param w = 1.0\nloss = (w - 3) ** 2\n:backward loss\n:step 0.25\nw\n:step 0.25\n"
              "loss\n:backward loss\nloss2 = (w - 3) ** 2\n:step 0.25\n:step 0.25\nw\n")
    _, out, err, code = _session(script)
    assert code == 1
    assert out[2] == "2"  # 1 - 0.25 * 2 * (1 - 3)
    assert "no gradient of parameters to apply" in err[0]
    assert "<repl>:6:1" in err[0]
    # the gradient of the old loss is for w = 1, which has changed: refused, w unchanged
    assert "have changed since" in err[1] and "<repl>:10:1" in err[1]
    assert "have changed since" in err[2] and "<repl>:11:1" in err[2]
    assert out[-1] == "2"


def test_data_sets_are_constants_in_expressions() -> None:
    script = (f"net n = MLP(3, [4, 4, 1])\ndata dx = {XS}\nv = n(dx[1])\n:grad v\n")
    _, out, err, code = _session(script)
    assert code == 0, err
    random.seed(0)
    net = MLP(3, [4, 4, 1])
    assert float(out[0].split(" = ")[1]) == pytest.approx(net(XS[1]).data, rel=1e-9)
    assert not any("/ddx" in line for line in out)  # data: no gradient
    assert sum("/dn.layers." in line for line in out) == 41


def test_nothing_but_quit_ends_the_session() -> None:
    script = b"1/0\nlog(-1)\nexp(1000)\nx = \x00\n\xff\xfe = 3\n" + b"(" * 5000 + b"\n1 + 1\n"
    result = run_cli("repl", input=script.decode("latin-1"))
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["inf", "nan", "inf", "2"]
    assert "Traceback" not in result.stderr
    assert "<repl>:4:" in result.stderr and "<repl>:5:" in result.stderr


def test_errors_point_at_the_session_line_or_the_loaded_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.exg"
    bad.write_text("def f(x):\n    return x * 2\n\ndef g(y):\n    return f(y, 1)\n")
    script = (f"a = 1\n:graph a +\n:load {bad}\ndef h(x):\n    y = x\n    return y + zz\n\n"
              ":grad a b\n")
    _, _, err, code = _session(script)
    assert code == 1
    assert err[0].startswith("<repl>:2:11: syntax error")
    assert err[0].splitlines()[1:3] == ["    :graph a +", "              ^"]
    assert err[1].startswith(f"{bad}:5:12: type error: 'f' takes 1 argument, got 2")
    assert err[2].startswith("<repl>:6:16: name error: 'zz' is not defined in 'h'")
    assert err[3].startswith("<repl>:8:9: syntax error")


def test_each_input_costs_the_same_however_long_the_session(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """Work counted, not timed: the operations evaluated for one more input of a chain do not
    grow with the chain."""
    counted: list[str] = []

    class Counting(EvalAlgebra):
        def scalar(self, op, args, attr=None):  # type: ignore[no-untyped-def]
            counted.append(op)
            return super().scalar(op, args, attr)

    monkeypatch.setattr(session_module, "_ALGEBRA", Counting())
    s = Session(out=lambda _: None, err=lambda _: None)
    s.feed("x = 1.0", 1)
    work = []
    for i in range(300):
        del counted[:]
        assert s.feed("x = x * 1.0001 + tanh(x)", i + 2)
        work.append(len(counted))
    assert work[10] == work[299] == 3
    assert s.env.value(s.env.bindings["x"]) == pytest.approx(_chain(300), rel=1e-12)


def _chain(n: int) -> float:
    x = 1.0
    for _ in range(n):
        x = x * 1.0001 + math.tanh(x)
    return x


def test_completion_reads_the_environment() -> None:
    s, _, _, _ = _session("net n = MLP(3, [4, 1])\ndef loss(x[3], y):\n    return (n(x) - y) ** 2"
                          "\n\nmyvar = 2\n")
    names = s.names()
    assert {"n", "loss", "myvar", "tanh", ":grad", ":step", "n.layers.0.w"} <= names


def test_sympy_has_a_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repl, "BUDGET", 0.2)
    _, out, err, _ = _session("net m = MLP(3, [8, 8, 8, 1])\nx = [2.0, 3.0, -1.0]\n:sympy m(x)\n"
                              "1 + 1\n")
    # either the conversion or the derivatives ran out of the (short) budget; the session
    # went on to the next input
    assert out[-1] == "2"
    assert any("budget" in line for line in out + err)


def test_a_pasted_cell_runs_input_by_input_and_ctrl_c_keeps_what_was_trained(
        tmp_path: Path) -> None:
    env = dict(os.environ, EXPRGRAD_HISTORY=str(tmp_path / "history"), TERM="xterm",
               PYTHONPATH=str(ROOT), PROMPT_TOOLKIT_NO_CPR="1")
    c = pexpect.spawn(sys.executable, ["-m", "exprgrad", "repl"], env=env, cwd=str(tmp_path),
                      encoding="utf-8", timeout=60, dimensions=(40, 200))
    c.expect(">>>")
    # a bracketed paste of several lines, a def among them, as from a notebook cell
    c.send("\x1b[200~x = 1\ndef sq(a):\n    return a * a\n\ny = sq(4) + x\ny\x1b[201~\r")
    c.expect(r"(?<![\d.])17\r\n")
    c.expect(">>>")
    c.send("\x1b[200~net n = MLP(3, [4, 4, 1])\n" + DATA + "def sqerr(x[3], y):\n"
           "    return (n(x) - y) ** 2\n\nbefore = sqerr(xs[0], ys[0])\x1b[201~\r")
    c.expect(">>>")
    c.sendline("train sqerr(xs, ys): steps=100000000, lr=0.01")
    c.expect(r"\d{3,}/100000000 \[")  # the progress bar: training is under way
    c.sendcontrol("c")
    c.expect(r"interrupted during step (\d+): kept the parameters of the \d+ whole step")
    c.expect(r"updated 41 parameter element\(s\) of net n")
    c.expect(">>>")
    c.sendline("before - sqerr(xs[0], ys[0])")
    c.expect(r"(?<![\d.\-])(-?\d[\d.]*(?:e-?\d+)?)\r\n")
    assert float(c.match.group(1)) > 0  # the loss went down: the steps were kept
    c.expect(">>>")
    c.sendline(":quit")
    c.expect(pexpect.EOF)


# ---- found by attacking the session (each once a wrong number, a crash or a bad location) ----

def test_identities_never_merge_named_values() -> None:
    _, out, err, code = _session("a = 2.0\nx = -a\ny = -x\nL = y * a\n:grad L\nv = [a, 3.0]\n"
                                 ":grad v[0] * 4 + v[1]\nz = 0 * log(0) + a\nz\n")
    assert code == 0, err
    assert dict(_partials("\n".join(out), "L")) == {"L": 1, "y": 2, "x": -2, "a": 4}
    assert "  d/dv = [4, 1]" in out
    assert out[-1] == "2"  # the strong zero (docs/numerics.md) still holds: 0 * -inf is 0


def test_a_rule_function_may_not_read_session_variables() -> None:
    _, _, err, code = _session("k = 2.0\ndef cr(x):\n    grad x = dout * k\n    return x * k\n\n"
                               "cr(1.0)\n")
    assert code == 1
    assert err[0].startswith("<repl>:2:5: type error: 'cr' has grad rules but reads the session "
                             "variable(s) 'k'")
    assert "unknown function 'cr'" in err[1]


def test_old_parameter_versions_are_told_apart() -> None:
    script = ("param w = 1.0\nkk = w * 2\ndef f(x):\n    return kk * x + w\n\nr = f(3.0)\n"
              ":backward r\n:step 0.1\n:grad f(3.0)\n:sympy f(3.0)\n")
    _, out, err, code = _session(script)
    assert code == 0, err
    assert out[2:6] == ["value 6.3", "  d/dw = 1", "  d/dkk = 3", "  d/dw (before update 1) = 6"]
    assert out[6] == "w + 6*w (before update 1)"  # two symbols, not 7*w


def test_a_def_that_no_longer_compiles_is_removed_not_left_broken() -> None:
    script = ("net n = Neuron(2)\ndef p(x[2]):\n    return n(x) ** 2\n\ndef q(x[2]):\n"
              "    return p(x) + 1\n\nnet n = Neuron(3)\np([1.0, 2.0])\n:code q\n")
    _, out, err, code = _session(script)
    assert code == 1
    assert out[1].startswith("removed 'p', which does not compile with the new n: <repl>:3:14:")
    assert out[2].startswith("removed 'q', which does not compile with the new p")
    assert "unknown function 'p'" in err[0] and "no def 'q'" in err[1]
    assert not any("internal error" in e for e in err)


def test_a_step_never_makes_parameters_infinite() -> None:
    _, out, err, _ = _session("param w = 1.0\nL = w * 1e308 * 10\n:backward L\n:step 0.1\n"
                              "L2 = w * 1e300\n:backward L2\n:step 1e10\nw\n")
    assert "the gradient of w is not finite" in err[0]
    assert "would make a parameter infinite" in err[1]
    assert out[-1] == "1"


def test_compiled_code_refuses_a_variable_whose_shape_changed() -> None:
    _, out, err, _ = _session("v = [1.0, 2.0]\ndef hv(a):\n    return a * sum(v)\n\n"
                              "v = [1.0, 2.0, 3.0]\n:code hv\nhv(1.0)\n")
    assert "'hv' reads the variable 'v', whose shape has changed" in err[0]
    assert err[0].startswith("<repl>:2:5:")
    assert "had shape [2] when 'hv' was defined and now has [3]" in err[1]


def test_paths_and_carets_in_commands(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "d.csv").write_text("1,2\n3,4\n")
    (sub / "l3.exg").write_text('data d = csv("d.csv")\n')
    _, out, err, _ = _session(f"a = 1\n:grad qq\n:load {sub / 'l3.exg'}\nd\n:load \x00x\n"
                              ":graph a x\x00.svg\n:grad\ta\n")
    assert err[0].startswith("<repl>:2:7: name error: 'qq' is not defined")
    assert out[0].startswith("loaded ") and out[1] == "[[1, 2], [3, 4]]"  # beside the file
    assert "a file name cannot contain a NUL character" in err[1]
    assert "a file name cannot contain a NUL character" in err[2]
    assert out[2:] == ["a = 1", "  da/da = 1"]


def test_each_declaration_gets_its_own_initial_values() -> None:
    s, out, err, code = _session("net n = MLP(3, [4, 4, 1])\nnet m = MLP(3, [4, 4, 1])\n")
    assert code == 0, err
    random.seed(0)
    first = [p.data for p in MLP(3, [4, 4, 1]).parameters()]
    values = s.env.param_values
    n_flat = [values[t][i] for t, i in s.env.program.param_order if t.startswith("n.")]
    m_flat = [values[t][i] for t, i in s.env.program.param_order if t.startswith("m.")]
    assert n_flat == first  # as init_params(0) of a file declaring the same
    assert m_flat != n_flat
