"""Every number from outside (CSV, JSON parameter files, command-line values) goes through one
strict reader: a bad input is one clear error with its location and exit 2, never a traceback,
never silently something else (a catalogue: input, expected start of the message)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

TOUR = str(ROOT / "examples" / "tour.exg")
SEED = str(ROOT / "examples" / "seed_mlp.exg")

VALUES = [
    ("a=1_0", "exprgrad: error: a=1_0 is not a number"),
    ("a=" + "1" * 5001, "exprgrad: error: a=111"),
    ("a=" + "[" * 5000, "exprgrad: error: a=[[[" ),
    ("a=true", "exprgrad: error: a=true is not a number"),
    ('a="1.5"', 'exprgrad: error: a="1.5" is not a number'),
    ("a=1e999", "exprgrad: error: a=1e999 does not fit a float"),
    ("a=0x10", "exprgrad: error: a=0x10 is not a number"),
]


@pytest.mark.parametrize(("value", "first"), VALUES)
def test_command_line_values(value: str, first: str) -> None:
    result = run_cli("eval", TOUR, "g", value, "b=2")
    assert result.returncode == 2 and result.stderr.startswith(first), result.stderr
    assert "Traceback" not in result.stderr


def test_good_command_line_values_still_work() -> None:
    result = run_cli("eval", TOUR, "g", "a=0.5", "b=-2e0", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["value"] == pytest.approx(
        0.46211715726000974)
    twice = run_cli("eval", TOUR, "g", "a=1", "a=2", "b=2")
    assert twice.returncode == 2 and "'a' is given twice" in twice.stderr


CSV = [
    (b"1,2\n\xff\xfe,3\n", "d.csv: not UTF-8 text (byte 4 is 0xff)"),
    (b"x,y\n1,a\n", "d.csv: line 2, field 2: 'a' is not a number"),
    (b"1,y\n2,3\n", "d.csv: line 1, field 2: 'y' is not a number"),
    (b"1_0,2\n", "d.csv: line 1, field 1: '1_0' is not a number"),
    (b"1,1e999\n", "d.csv: line 1, field 2: '1e999' does not fit a float"),
    (b"1;2\n3;4\n", "d.csv: line 1: fields separated by ';' or tabs"),
    (b"1,\"2\n", "d.csv: line 1: unexpected end of data"),
    (b"1," + b"9" * 200_000 + b"\n", "d.csv: line 1: field larger than field limit"),
]


@pytest.mark.parametrize(("data", "message"), CSV)
def test_csv_in_a_program(tmp_path: Path, data: bytes, message: str) -> None:
    (tmp_path / "d.csv").write_bytes(data)
    (tmp_path / "p.exg").write_text('data d = csv("d.csv")\ndef f(x):\n    return x\n')
    result = run_cli("compile", "p.exg", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith(f"p.exg:1:14: error: {message}"), \
        result.stderr


def test_csv_byte_order_mark_keeps_the_first_row(tmp_path: Path) -> None:
    """With a BOM the first row used to be taken for a header and lost."""
    (tmp_path / "d.csv").write_bytes(b"\xef\xbb\xbf1,2\n3,4\n")
    (tmp_path / "p.exg").write_text('data d = csv("d.csv")\ndef f(x[2]):\n    return sum(x)\n'
                                    "def loss(x[2]):\n    return sum(x)\n")
    import exprgrad

    program = exprgrad.api.program_of(tmp_path / "p.exg")
    assert program.data["d"] == [[1.0, 2.0], [3.0, 4.0]]


@pytest.mark.parametrize("name", ["../d.csv", "/etc/hostname", "fifo.csv", "sub"])
def test_csv_reads_only_regular_files_below_the_program(tmp_path: Path, name: str) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (tmp_path / "d.csv").write_text("1,2\n")
    os.mkfifo(project / "fifo.csv")
    (project / "sub").mkdir()
    (project / "p.exg").write_text(f'data d = csv("{name}")\ndef f(x):\n    return x\n')
    result = run_cli("compile", "p.exg", cwd=project, timeout=30)  # a FIFO would block
    assert result.returncode == 2, result.stderr
    assert ("outside the .exg file's folder" in result.stderr
            or "it is not a regular file" in result.stderr), result.stderr


def test_train_data_rows_are_numbered_as_in_the_file(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("x0,x1,x2,y\n\n1,2,3,1\n1,2,3\n")
    result = run_cli("train", SEED, "--data", "d.csv", "--quiet", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("d.csv: error: line 4 has 3 fields; 'loss' needs 4")


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    result = run_cli("train", SEED, "--save", "p.json", "--quiet", "--steps", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path / "p.json"


def _variant(saved: Path, name: str, edit: object) -> str:
    payload = json.loads(saved.read_text())
    text = edit(payload) if callable(edit) else str(edit)
    (saved.parent / name).write_text(text if isinstance(text, str) else json.dumps(payload))
    return name


FIRST = "n.layers.0.neurons.0.w.0"
PARAMS = [
    ("deep.json", "[" * 100_000 + "]" * 100_000, "lists or objects nested more than 20 deep"),
    ("bool.json", lambda p: p["params"].__setitem__(FIRST, True),
     f"the value of '{FIRST}' is true, not a finite number"),
    ("str.json", lambda p: p["params"].__setitem__(FIRST, "1.5"),
     f"the value of '{FIRST}' is \"1.5\", not a finite number"),
    ("nosig.json", lambda p: p.pop("model_signature") and None, "not a complete parameter file"),
    ("extra.json", lambda p: p["params"].__setitem__("extra", 1.0), "unknown parameters 'extra'"),
    ("missing.json", lambda p: p["params"].pop(FIRST), f"missing parameters '{FIRST}'"),
]


@pytest.mark.parametrize(("name", "edit", "message"), PARAMS)
def test_parameter_files(saved: Path, name: str, edit: object, message: str) -> None:
    _variant(saved, name, edit)
    result = run_cli("eval", SEED, "loss", "x=[1,2,3]", "y=1", "--params", name,
                     cwd=saved.parent)
    assert result.returncode == 2 and result.stderr.startswith(f"{name}: error: {message}"), \
        result.stderr


def test_parameter_file_duplicate_keys_and_huge_numbers(saved: Path) -> None:
    text = saved.read_text()
    (saved.parent / "dup.json").write_text(
        text.replace('"n.layers.0.neurons.0.w.1"', f'"{FIRST}"', 1))
    (saved.parent / "big.json").write_text(
        text.replace(f'"{FIRST}": ', f'"{FIRST}": 1{"0" * 400}, "zz": ', 1))
    for name, message in (("dup.json", f"the key '{FIRST}' appears twice"),
                          ("big.json", "the number 1000")):
        result = run_cli("train", SEED, "--load", name, "--quiet", cwd=saved.parent)
        assert result.returncode == 2 and message in result.stderr, result.stderr


TRAIN = "param w = 1\ndef loss(x):\n    return (w * x) ** 2\ndata xs = [1, 2]\n"


@pytest.mark.parametrize(("options", "first"), [
    ("lr=0.1, lr=0.2", "t.exg:5:25: error: 'lr' is given twice"),
    ("steps=1.5", "t.exg:5:17: error: 'steps' needs a whole number"),
    ("steps=1e300", "t.exg:5:17: error: steps must be from 0 to 100000000"),
    ("predict=nope", "t.exg: error: no function 'nope' to predict with"),
])
def test_train_settings_fail_before_training_at_their_place(tmp_path: Path, options: str,
                                                            first: str) -> None:
    (tmp_path / "t.exg").write_text(TRAIN + f"train loss(xs): {options}\n")
    result = run_cli("train", "t.exg", "--save", "p.json", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith(first), result.stderr
    assert "step " not in result.stderr and not (tmp_path / "p.json").exists()


def test_a_train_time_error_shows_the_line_and_caret(tmp_path: Path) -> None:
    (tmp_path / "t.exg").write_text("param w = 1\ndef loss(x, y):\n    return (w * x - y) ** 2\n"
                                    "data xs = [1, 2]\ndata ys = [1]\ntrain loss(xs, ys)\n")
    result = run_cli("train", "t.exg", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[:3] == [
        "t.exg:6:7: type error: the data sets have different numbers of examples: xs has 2, "
        "ys has 1", "    train loss(xs, ys)", "          ^^^^"]


@pytest.mark.parametrize(("source", "first"), [
    ("param w[1000001] = uniform(-1, 1)\n", "s.exg:1:7: limit exceeded: parameter 'w' has 1000001"),
    ("def f(x[3000, 3000]):\n    return x[0][0]\n", "s.exg:1:7: limit exceeded: argument 'x'"),
    ("net n = MLP(2000, [1000])\n", "s.exg:1:5: limit exceeded: a layer of 'n' (2000 x 1000"),
    ("param w[200001] = 0\ndef f(x):\n    return x * w[0]\n",
     "s.exg: limit exceeded: the scalar backend writes out every parameter element"),
])
def test_sizes_that_would_exhaust_memory_are_refused_at_once(tmp_path: Path, source: str,
                                                             first: str) -> None:
    (tmp_path / "s.exg").write_text(source + ("" if "def" in source else
                                              "def f(x):\n    return x\n"))
    result = run_cli("compile", "s.exg", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith(first), result.stderr


def test_more_strictness(tmp_path: Path, saved: Path) -> None:
    # Unicode digits are not numbers; a huge number in a list says so
    assert "is not a number" in run_cli("eval", TOUR, "g", "a=\u0663", "b=2").stderr
    big = run_cli("eval", SEED, "loss", "x=[1" + "0" * 400 + ",2,3]", "y=1")
    assert big.returncode == 2 and "does not fit a float" in big.stderr
    # brackets inside a JSON string are not nesting; unknown top-level keys are refused
    payload = json.loads(saved.read_text())
    payload["source"] = "[" * 50
    (saved.parent / "s.json").write_text(json.dumps(payload))
    ok = run_cli("eval", SEED, "loss", "x=[1,2,3]", "y=1", "--params", "s.json",
                 cwd=saved.parent)
    assert ok.returncode == 0, ok.stderr
    payload["zzz"] = 1
    (saved.parent / "z.json").write_text(json.dumps(payload))
    unknown = run_cli("eval", SEED, "loss", "x=[1,2,3]", "y=1", "--params", "z.json",
                      cwd=saved.parent)
    assert unknown.returncode == 2 and "unknown keys 'zzz'" in unknown.stderr
    # csv(): a link leading outside the folder, and columns that are not whole numbers
    project = tmp_path / "proj"
    project.mkdir()
    (tmp_path / "outside.csv").write_text("secret\n1\n")
    (project / "up").symlink_to(tmp_path)
    (project / "d.csv").write_text("1,2\n")
    for call, message in (('csv("up/outside.csv")', "outside the .exg file's folder"),
                          ('csv("d.csv", cols=[0.5, 1])', "a column is a whole number"),
                          ('csv("d.csv", cols=-1)', "a column is a whole number")):
        (project / "p.exg").write_text(f"data d = {call}\ndef f(x):\n    return x\n")
        result = run_cli("compile", "p.exg", cwd=project)
        assert result.returncode == 2 and message in result.stderr, (call, result.stderr)
        assert "secret" not in result.stderr


def test_budget_and_outputs_edges(tmp_path: Path) -> None:
    huge = run_cli("check", TOUR, "g", "--budget", "1e10")
    assert huge.returncode == 2 and "at most 1000000" in huge.stderr
    slash = run_cli("compile", TOUR, "-o", "new.py/", cwd=tmp_path)
    assert slash.returncode == 2 and "ends in '/'" in slash.stderr
    assert not (tmp_path / "new.py").exists()
    same = run_cli("train", SEED, "--save", "x.png", "--plot", "x.png", cwd=tmp_path)
    assert same.returncode == 2 and "both name" in same.stderr


def test_nan_and_inf_inside_command_line_lists() -> None:
    """nan, inf and -inf are numbers alone (x=nan) and inside lists, in any case; a word that
    only starts like one, or one in quotes, is not."""
    from exprgrad.errors import ExprgradValueError
    from exprgrad.readers import parse_value

    value = parse_value("v", "[1, nan, -Inf, +infinity]")
    assert isinstance(value, list) and value[0] == 1.0 and value[1] != value[1]
    assert value[2:] == [float("-inf"), float("inf")]
    assert parse_value("m", "[[NAN, 2], [3, -inf]]")[1] == [3.0, float("-inf")]  # type: ignore[index]
    for bad in ("[1, nanx, 2]", '[1, "nan", 2]', "[1, nan.5]"):
        with pytest.raises(ExprgradValueError):
            parse_value("v", bad)
