"""Bugs in exprgrad are reported as bugs: exit 70 (EX_SOFTWARE), the versions, the command line,
the traceback and where to report it; never worded as the user's mistake. The REPL reports one
and goes on; the import hook lets it propagate, marked as a bug.

The bugs are planted for real: a ``sitecustomize`` module on ``PYTHONPATH`` (run by Python at
start-up, before ``exprgrad`` is even imported by the command) replaces two functions inside
exprgrad so that one chosen input makes them fail, and ``python -m exprgrad`` runs as a user runs
it. ``format_value`` raises a ``KeyError`` for the value 4242; ``verify_module`` checks, for a
module containing the number 0.123456789, that module text plus an ``import os`` -- so the real
allowlist refuses it with a genuine ``UnsafeCodeError``. Every other input works as usual.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pexpect
import pytest
from conftest import ROOT

import exprgrad
from exprgrad.emit.verify import UnsafeCodeError
from exprgrad.errors import (
    CheckFailure,
    ExprgradError,
    ExprgradImportError,
    ExprgradNameError,
    bug_report,
    is_bug,
)

PLANT = textwrap.dedent('''
    """Planted bugs for tests/test_internal_errors.py (active only with EXPRGRAD_PLANT=1)."""
    import os

    if os.environ.get("EXPRGRAD_PLANT") == "1":
        import exprgrad.emit.arrays as _arrays
        import exprgrad.emit.scalar as _scalar
        import exprgrad.emit.verify as _verify
        import exprgrad.run.evaluate as _evaluate
        import exprgrad.ui.repl as _repl

        _format_value = _evaluate.format_value
        _verify_module = _verify.verify_module

        def format_value(value):
            if value == 4242:
                raise KeyError("planted bug")
            if value == 130:
                raise KeyboardInterrupt
            return _format_value(value)

        def verify_module(code):
            if "0.123456789" in code:
                code += "\\nimport os\\n"
            return _verify_module(code)

        _evaluate.format_value = format_value
        _repl.format_value = format_value
        for _module in (_verify, _scalar, _arrays):  # where the name is bound
            _module.verify_module = verify_module
''')

#: words of the reports of a user's mistake, which a bug report must not use
USER_WORDING = ("hint:", "name error", "syntax error", "type error", ": error:", "check failed",
                "import error")


@pytest.fixture
def planted(tmp_path: Path) -> dict[str, str]:
    """The environment of a process in which the planted bugs are active."""
    site = tmp_path / "plant"
    site.mkdir()
    (site / "sitecustomize.py").write_text(PLANT)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]),
                EXPRGRAD_PLANT="1")


def _run(env: dict[str, str], *args: str, cwd: Path, stdin: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exprgrad", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, input=stdin, timeout=300)


def _assert_bug_report(stderr: str, exception: str) -> None:
    lines = stderr.splitlines()
    assert lines[0] == ("exprgrad: internal error: this is a bug in exprgrad, "
                        "not a mistake in your input."), stderr
    assert lines[1].startswith("Please report it to "), stderr
    assert f"exprgrad version: {exprgrad.__version__}\n" in stderr
    assert f"Python version: {platform.python_version()} " in stderr
    assert f"exception: {exception}" in stderr
    assert "Traceback (most recent call last):" in stderr
    for words in USER_WORDING:
        assert words not in stderr, (words, stderr)


def test_a_bug_during_eval_exits_70_with_a_bug_report(planted: dict[str, str],
                                                      tmp_path: Path) -> None:
    (tmp_path / "f.exg").write_text("def f(x):\n    return x\n")
    result = _run(planted, "eval", "f.exg", "f", "x=4242", cwd=tmp_path)
    assert result.returncode == 70, result.stderr
    assert result.stdout == ""
    _assert_bug_report(result.stderr, "KeyError: 'planted bug'")
    assert "command: exprgrad eval f.exg f x=4242\n" in result.stderr
    assert "in format_value" in result.stderr  # the traceback reaches the failing function
    assert result.stderr.rstrip().endswith("KeyError: 'planted bug'")
    # the plant fires for that one value only: everything else works
    fine = _run(planted, "eval", "f.exg", "f", "x=3", cwd=tmp_path)
    assert (fine.returncode, fine.stdout) == (0, "f(x=3) = 3\n  df/dx = 1\n"), fine.stderr


def test_generated_code_refused_by_the_allowlist_is_a_bug_not_a_user_error(
        planted: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "f.exg").write_text("def f(x):\n    return x + 0.123456789\n")
    for args in (["compile", "f.exg"], ["eval", "f.exg", "f", "x=1"]):
        result = _run(planted, *args, cwd=tmp_path)
        assert result.returncode == 70, (args, result.stderr)
        _assert_bug_report(result.stderr, "exprgrad.emit.verify.UnsafeCodeError: ")
        assert "import of os" in result.stderr
        assert f"command: exprgrad {' '.join(args)}\n" in result.stderr
    # the allowlist is what refused it: without the check the (planted) module is written
    skipped = _run(planted, "compile", "f.exg", "--no-verify", cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stderr


def test_keyboard_interrupt_still_exits_130(planted: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "f.exg").write_text("def f(x):\n    return x\n")
    result = _run(planted, "eval", "f.exg", "f", "x=130", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (130, "interrupted\n")


def test_user_mistakes_and_system_errors_are_not_bugs(planted: dict[str, str],
                                                      tmp_path: Path) -> None:
    (tmp_path / "bad.exg").write_text("def f(x):\n    return x + yy\n")
    mistake = _run(planted, "eval", "bad.exg", "f", "x=1", cwd=tmp_path)
    assert mistake.returncode == 2
    assert mistake.stderr.startswith("bad.exg:2:16: name error: 'yy' is not defined")
    assert "internal error" not in mistake.stderr and "Traceback" not in mistake.stderr
    # the system's answer (here: no such directory) is one line and exit 2
    (tmp_path / "f.exg").write_text("def f(x):\n    return x\n")
    nowhere = _run(planted, "compile", "f.exg", "-o", "no/such/dir/out.py", cwd=tmp_path)
    assert nowhere.returncode == 2, nowhere.stderr
    assert nowhere.stderr.count("\n") == 1 and "no such directory" in nowhere.stderr
    assert "internal error" not in nowhere.stderr and "Traceback" not in nowhere.stderr


def test_repl_reports_a_bug_and_the_session_goes_on(planted: dict[str, str],
                                                   tmp_path: Path) -> None:
    env = dict(planted, EXPRGRAD_HISTORY=str(tmp_path / "history"), TERM="xterm",
               PROMPT_TOOLKIT_NO_CPR="1")
    c = pexpect.spawn(sys.executable, ["-m", "exprgrad", "repl"], env=env, cwd=str(tmp_path),
                      encoding="utf-8", timeout=60, dimensions=(40, 200))
    c.expect(">>>")
    c.sendline("x = 2")
    c.expect(">>>")
    c.sendline("4242")
    c.expect("internal error: this is a bug in exprgrad, not a mistake in your input")
    c.expect("Please report it to ")
    c.expect(f"exprgrad version: {exprgrad.__version__}")
    c.expect("command: exprgrad repl")
    c.expect("input: 4242")
    c.expect("exception: KeyError: 'planted bug'")
    c.expect("Traceback")
    c.expect(">>>")
    c.sendline("x * 3")  # the session goes on, with its variables
    c.expect(r"(?<![\d.])6\r\n")
    c.expect(">>>")
    c.sendline("def f(y):")  # the allowlist refuses the (planted) generated code
    c.expect(r"\.\.\.")
    c.sendline("    return y * 0.123456789")
    c.expect(r"\.\.\.")
    c.sendline("")
    c.expect(">>>")
    c.sendline(":code f")
    c.expect("internal error: this is a bug in exprgrad")
    c.expect("exception: exprgrad.emit.verify.UnsafeCodeError: .*import of os")
    c.expect(">>>")
    c.sendline("x + qq")  # a mistake is still reported as a mistake
    c.expect(r"<repl>:\d+:5: name error: 'qq' is not defined")
    c.expect(">>>")
    c.sendline(":grad x * x")
    c.expect(r"d/dx = 4\r\n")
    c.expect(">>>")
    c.sendcontrol("d")
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0


def test_piped_repl_reports_a_bug_goes_on_and_exits_70(planted: dict[str, str],
                                                      tmp_path: Path) -> None:
    result = _run(planted, "repl", cwd=tmp_path, stdin="x = 2\n4242\nx * 3\n")
    assert result.returncode == 70, result.stderr
    assert result.stdout == "6\n"
    _assert_bug_report(result.stderr, "KeyError: 'planted bug'")
    assert "input: 4242\n" in result.stderr
    # a mistake alone still exits 1
    mistake = _run(planted, "repl", cwd=tmp_path, stdin="x +\n2 * 3\n")
    assert (mistake.returncode, mistake.stdout) == (1, "6\n")
    assert "internal error" not in mistake.stderr


def test_import_hook_lets_a_bug_propagate_marked_as_a_bug(planted: dict[str, str],
                                                         tmp_path: Path) -> None:
    (tmp_path / "model.exg").write_text("def f(x):\n    return x + 0.123456789\n")
    (tmp_path / "typo.exg").write_text("def f(x):\n    return x + yy\n")
    script = textwrap.dedent("""
        import sys, traceback
        import exprgrad
        exprgrad.install()
        for name in ("model", "typo"):
            try:
                __import__(name)
            except Exception as err:
                print(name, type(err).__module__ + "." + type(err).__qualname__,
                      isinstance(err, ImportError))
                print("".join(traceback.format_exception_only(type(err), err)), end="")
                print("notes:", getattr(err, "__notes__", []))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=planted,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    model, typo = out.split("\ntypo ", 1)
    assert model.startswith("model exprgrad.emit.verify.UnsafeCodeError False\n"), out
    assert "This is a bug in exprgrad, not a mistake in " in model
    assert str((tmp_path / "model.exg").resolve()) in model
    assert f"exprgrad version {exprgrad.__version__}" in model
    assert "Please report it to" in model
    # a mistake in the file is still an ImportError carrying the caret display, no note
    assert typo.startswith("exprgrad.errors.ExprgradImportError True\n"), out
    assert "name error: 'yy' is not defined" in typo and "notes: []" in typo


def test_import_hook_marks_a_bug_while_compiling(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import exprgrad.ui.importer

    def broken(*args: object, **kwargs: object) -> str:
        raise AssertionError("planted invariant failure")

    (tmp_path / "broken_model_exg.exg").write_text("def f(x):\n    return x\n")
    monkeypatch.setattr(exprgrad.ui.importer, "generate", broken)
    monkeypatch.syspath_prepend(str(tmp_path))
    exprgrad.install()
    try:
        with pytest.raises(AssertionError, match="planted invariant failure") as info:
            __import__("broken_model_exg")
    finally:
        exprgrad.uninstall()
        sys.modules.pop("broken_model_exg", None)
    notes = getattr(info.value, "__notes__", [])
    if sys.version_info >= (3, 11):
        assert len(notes) == 1 and notes[0].startswith("This is a bug in exprgrad, not a mistake")


def test_is_bug_tells_bugs_from_mistakes() -> None:
    assert is_bug(KeyError("x")) and is_bug(AssertionError()) and is_bug(NameError("math"))
    assert is_bug(UnsafeCodeError("generated code line 3: import of os"))
    assert is_bug(RecursionError())
    assert not is_bug(ExprgradNameError("'yy' is not defined"))
    assert not is_bug(CheckFailure("wrong")) and not is_bug(ExprgradError("x"))
    assert not is_bug(ExprgradImportError("x"))
    assert not is_bug(OSError(28, "No space left on device"))
    assert not is_bug(KeyboardInterrupt()) and not is_bug(SystemExit(0))


def test_bug_report_cannot_move_the_terminal_cursor() -> None:
    try:
        raise KeyError("\x1b[2J\x1b[Hgone")
    except KeyError as err:
        text = bug_report(err, ["exprgrad", "eval", "\x1b]0;title\x07.exg"], user_input="\x1b[A")
    assert "\x1b" not in text and "\x07" not in text
    assert "KeyError" in text and "command: exprgrad eval" in text
