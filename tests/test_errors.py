"""Every error a user can cause: file:line:col, the line, a caret under the span, a hint, exit 2,
and never a Python traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, run_cli

import exprgrad
from exprgrad.errors import ExprgradError, ExprgradNameError, ExprgradSyntaxError

BAD = ROOT / "tests" / "bad"


def _err(src: str) -> ExprgradError:
    with pytest.raises(ExprgradError) as info:
        exprgrad.compile_source(src, "t.exg")
    return info.value


def _caret(err: ExprgradError) -> tuple[str, str]:
    lines = err.render().splitlines()
    return lines[1], lines[2]


# kind, source, line, col, caret width, a phrase of the message, a phrase of the hint
CASES = [
    ("syntax", "def f(x):\n    return x * * 2\n", 2, 16, 1, "unexpected '*'", None),
    ("syntax-expected", "def f(x)\n    return x\n", 1, 9, 1, "expected ':'", "ends with ':'"),
    ("undefined", "def f(x, y):\n    return x + yy\n", 2, 16, 2, "'yy' is not defined",
     "did you mean 'y'?"),
    ("unknown-function", "def f(x):\n    return sinn(x)\n", 2, 12, 7, "unknown function 'sinn'",
     "did you mean 'sin'?"),
    ("arg-count", "def g(a, b):\n    return a\ndef f(x):\n    return g(x)\n", 4, 12, 4,
     "'g' takes 2 arguments, got 1", "defined on line 1"),
    ("redefinition", "def f(x):\n    return x\ndef f(y):\n    return y\n", 3, 5, 1,
     "already defined (line 1)", None),
    ("missing-return", "def f(x):\n    y = x\n", 1, 5, 1, "has no 'return'", "return"),
    ("recursion", "def f(x):\n    return f(x)\n", 2, 12, 4, "recursion is not supported", None),
    ("python-reserved", "def f(x):\n    class = x\n    return class\n", 2, 5, 5,
     "Python reserves", "rename"),
    ("shape", "def f(x[2], y[3]):\n    return dot(x, y)\n", 2, 12, 9, "dot needs two vectors",
     None),
]


@pytest.mark.parametrize("kind,src,line,col,width,message,hint", CASES, ids=[c[0] for c in CASES])
def test_error_location_and_caret(kind: str, src: str, line: int, col: int, width: int,
                                  message: str, hint: str | None) -> None:
    err = _err(src)
    assert str(err).startswith(f"t.exg:{line}:{col}: "), str(err)
    assert message in str(err)
    shown, caret = _caret(err)
    assert shown.strip() == src.splitlines()[line - 1].strip()
    # the caret sits under the offending text
    assert caret.index("^") - 4 == col - 1
    assert caret.count("^") == width
    if hint:
        assert hint in err.render().splitlines()[-1]
    assert err.lineno == line and err.offset == col


def test_errors_inherit_builtin_types() -> None:
    assert isinstance(_err("def f(x):\n    return )\n"), SyntaxError)
    assert isinstance(_err("def f(x):\n    return x + q\n"), NameError)
    assert isinstance(_err("def f(x[2]):\n    return x[5]\n"), TypeError)
    err = _err("def f(x):\n    return x +\n")
    assert isinstance(err, ExprgradSyntaxError)
    assert err.filename == "t.exg" and err.text == "    return x +"
    assert isinstance(_err("def f(def):\n    return 1\n"), ExprgradNameError)
    assert isinstance(_err("def f(_x):\n    return 1\n"), ExprgradNameError)


def _catalogue() -> list[tuple[str, str]]:
    rows = []
    for line in (BAD / "expected.txt").read_text(encoding="utf-8").splitlines():
        name, _, expected = line.partition("|")
        rows.append((name, expected))
    return rows


def test_catalogue_covers_every_file() -> None:
    files = sorted(p.name for p in BAD.glob("*.exg"))
    assert files == sorted(name for name, _ in _catalogue())


@pytest.mark.parametrize("name,expected", _catalogue(), ids=[n for n, _ in _catalogue()])
def test_bad_input_catalogue(name: str, expected: str) -> None:
    """The CLI's first line for each broken file, exit 2, no traceback, nothing on stdout."""
    result = run_cli("compile", name, cwd=BAD)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines()[0] == expected
    assert "Traceback" not in result.stderr


def test_crlf_bom_and_trailing_comment_compile(tmp_path: Path) -> None:
    src = "\ufeff# a comment\r\ndef f(x):\r\n    return x * 2  # twice\r\n# the end"
    path = tmp_path / "crlf.exg"
    path.write_bytes(src.encode("utf-8"))
    mod = exprgrad.load(path)
    assert mod.f_grad(3.0) == (6.0, (2.0,))


def test_usage_errors_exit_2() -> None:
    assert run_cli("eval", "examples/tour.exg", "nope", "x=1").returncode == 2
    missing = run_cli("eval", "examples/tour.exg", "f", "x=1")
    assert missing.returncode == 2 and "missing a value for 'y'" in missing.stderr
    assert run_cli("compile", "no/such/file.exg").returncode == 2
    assert run_cli("frobnicate").returncode == 2
    for result in (missing,):
        assert "Traceback" not in result.stderr
    assert missing.stderr.startswith("exprgrad: error: missing a value")  # no '<string>:'
    hessian = run_cli("compile", "examples/tour.exg", "--backend", "numpy", "--hessian")
    assert hessian.returncode == 2 and "--hessian is for the python backend" in hessian.stderr
    assert hessian.stdout == ""


def test_eval_labels_the_gradient_of_a_vector_output_as_of_its_sum(tmp_path: Path) -> None:
    (tmp_path / "v.exg").write_text("def k(x):\n    return [x, 2 * x]\n"
                                    "def two(x):\n    return [x, x], x * x\n")
    k = run_cli("eval", "v.exg", "k", "x=1", cwd=tmp_path)
    assert k.returncode == 0 and "d(sum k)/dx = 3" in k.stdout  # 1 + 2
    two = run_cli("eval", "v.exg", "two", "x=3", cwd=tmp_path)
    assert "d(sum two[0])/dx = 2" in two.stdout and "dtwo[1]/dx = 6" in two.stdout
