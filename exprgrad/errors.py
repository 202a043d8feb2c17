"""The error types a user can cause, each able to show where in the source it happened.

Contract: every error raised for a user's mistake is an :class:`ExprgradError`. ``str(err)`` is
the one-line form ``file:line:col: message``; :meth:`ExprgradError.render` is the full display:
that line, the offending source line, a caret under the span, and a hint when there is one.
Subclasses also inherit the matching built-in exception so callers can catch either.
Internal invariants use ``assert``, never these types.

Anything else that escapes exprgrad is a bug in exprgrad, not a user's mistake: :func:`is_bug`
tells the two apart (an ``ExprgradError`` that says exprgrad produced something wrong, such
as :class:`exprgrad.emit.verify.UnsafeCodeError`, is a bug too; an ``OSError`` is the system's
answer, not a bug), :func:`bug_report` is the text shown for one, and the CLI exits with
:data:`EXIT_BUG`.
"""

from __future__ import annotations

import platform
import shlex
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

from .version import __version__

#: exit codes of the ``exprgrad`` command (README.md, "Exit codes"; docs/errors.md)
EXIT_OK = 0
EXIT_PROBLEM = 1  # a check or a run found a problem (a wrong gradient, a diverged loss)
EXIT_USAGE = 2  # bad input or usage: a mistake in a .exg file, an option, a path
EXIT_BUG = 70  # a bug in exprgrad itself (EX_SOFTWARE in sysexits.h)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


@dataclass(frozen=True)
class Span:
    """A region of source text: 1-based line and column, end column exclusive."""

    line: int
    col: int
    end_line: int
    end_col: int

    def merge(self, other: Span) -> Span:
        start = min((self.line, self.col), (other.line, other.col))
        end = max((self.end_line, self.end_col), (other.end_line, other.end_col))
        return Span(start[0], start[1], end[0], end[1])


class ExprgradError(Exception):
    """Base of every error a user can cause. Carries an optional source span."""

    kind = "error"

    def __init__(
        self,
        message: str,
        span: Span | None = None,
        *,
        filename: str | None = None,
        source: str | None = None,
        hint: str | None = None,
    ) -> None:
        Exception.__init__(self, message)
        self.message = message
        self.span = span
        self.filename = filename or "<string>"
        self.source = source
        self.hint = hint
        # SyntaxError-compatible attributes (also useful for every other subclass).
        self.lineno = span.line if span else None
        self.offset = span.col if span else None
        self.text = self.source_line()
        self.msg = message

    def __reduce__(self) -> tuple[object, ...]:
        # pickled whole (span, file, hint, ...): chunked training raises these on Dask workers
        state = dict(self.__dict__)
        if isinstance(self, ImportError):  # (kept by ImportError itself, not in __dict__)
            state.update(name=self.name, path=self.path)
        return (_rebuild_error, (type(self), self.message, self.span, self.filename,
                                 self.source, self.hint, state))

    def with_source(self, filename: str, source: str) -> ExprgradError:
        """Attach the file name and text (if no file is known yet); returns self for chaining."""
        if self.source is None and self.filename == "<string>":
            self.filename = filename
            self.source = source
            self.text = self.source_line()
        return self

    def source_line(self) -> str | None:
        if self.source is None or self.span is None:
            return None
        lines = self.source.splitlines()
        if 1 <= self.span.line <= len(lines):
            return lines[self.span.line - 1]
        return None

    def location(self) -> str:
        if self.span is None:  # about no file at all (a command-line value): the program's name
            return "exprgrad" if self.filename == "<string>" else self.filename
        return f"{self.filename}:{self.span.line}:{self.span.col}"

    def __str__(self) -> str:
        return f"{self.location()}: {self.kind}: {self.message}"

    def render(self) -> str:
        """The full display: location and message, the source line, a caret, the hint."""
        out = [str(self)]
        line = self.source_line()
        if line is not None and self.span is not None:
            shown = line.expandtabs(1).rstrip("\r\n")
            if len(shown) > 200:  # keep huge lines readable: a window around the caret
                start = max(0, self.span.col - 100)
                shown = shown[start : start + 200]
                col = self.span.col - start
            else:
                col = self.span.col
            width = 1
            if self.span.end_line == self.span.line and self.span.end_col > self.span.col:
                width = min(self.span.end_col - self.span.col, max(1, len(shown) - col + 1))
            out.append("    " + _printable(shown))
            out.append("    " + " " * (col - 1) + "^" * width)
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)


def _rebuild_error(cls: type[ExprgradError], message: str, span: Span | None, filename: str,
                   source: str | None, hint: str | None, state: dict[str, object]
                   ) -> ExprgradError:
    """An unpickled :class:`ExprgradError` (any subclass, whatever its ``__init__`` takes)."""
    err = cls.__new__(cls)
    ExprgradError.__init__(err, message, span, filename=filename, source=source, hint=hint)
    for key, value in state.items():
        setattr(err, key, value)
    return err


def _printable(text: str) -> str:
    """Replace control characters so a message cannot move the terminal's cursor."""
    return "".join(ch if ch.isprintable() or ch == " " else "?" for ch in text)


class ExprgradSyntaxError(ExprgradError, SyntaxError):  # type: ignore[misc]
    """The text does not follow the grammar."""

    kind = "syntax error"

    def __str__(self) -> str:  # SyntaxError defines its own __str__; keep ours
        return ExprgradError.__str__(self)


class ExprgradNameError(ExprgradError, NameError):
    """An undefined, reserved or redefined name."""

    kind = "name error"


class ExprgradTypeError(ExprgradError, TypeError):
    """Wrong number of arguments, a shape mismatch, a value of the wrong kind."""

    kind = "type error"


class ExprgradValueError(ExprgradError, ValueError):
    """A value outside what is allowed (an option, a size, a data file)."""

    kind = "error"


class ExprgradLimitError(ExprgradError):
    """The program exceeds a documented size limit."""

    kind = "limit exceeded"


class GradientError(ExprgradError):
    """A gradient that is undefined or not implemented for an op (names the op and input)."""

    kind = "gradient error"


class CheckFailure(ExprgradError):
    """A check found a problem (a wrong gradient or rule); the CLI exits 1."""

    kind = "check failed"


class ExprgradImportError(ExprgradError, ImportError):
    """A ``.exg`` module could not be imported; the message is the full caret display."""

    kind = "import error"

    def __init__(self, message: str, span: Span | None = None, *, filename: str | None = None,
                 source: str | None = None, hint: str | None = None, name: str | None = None,
                 path: str | None = None) -> None:
        ExprgradError.__init__(self, message, span, filename=filename, source=source, hint=hint)
        self.name = name
        self.path = path

    def __str__(self) -> str:
        return self.message + (f"\nhint: {self.hint}" if self.hint else "")


# ---- bugs in exprgrad ------------------------------------------------------------------------

def _bug_kinds() -> tuple[type[BaseException], ...]:
    """The ``ExprgradError`` subclasses that report a fault in exprgrad's own output. Looked up
    in ``sys.modules``: a module that was never imported raised none of its errors (and this
    module imports nothing of exprgrad's, so anything may import it)."""
    verify = sys.modules.get("exprgrad.emit.verify")
    unsafe = getattr(verify, "UnsafeCodeError", None)
    return (unsafe,) if isinstance(unsafe, type) else ()


def is_bug(err: BaseException) -> bool:
    """Whether ``err``, escaping exprgrad, is a bug in exprgrad rather than a user's mistake.

    A user's mistake is an :class:`ExprgradError` (except those naming a fault in generated code,
    such as ``UnsafeCodeError``); an ``OSError`` is the operating system refusing something (a
    full disk, a permission) and is reported as such. Everything else is a bug: an
    ``AssertionError``, ``KeyError``, ``NameError`` ... inside exprgrad or in the code it
    generated. ``KeyboardInterrupt`` and ``SystemExit`` are not errors and never bugs.
    """
    if not isinstance(err, Exception):
        return False
    if isinstance(err, ExprgradError):
        return isinstance(err, _bug_kinds())
    return not isinstance(err, OSError)


def system_error_message(err: OSError) -> str:
    """One line for an ``OSError`` that reached the top (a full disk, a permission)."""
    what = err.strerror or str(err) or type(err).__name__
    where = err.filename if err.filename is not None else "exprgrad"
    return _printable(f"{where}: error: {what}")


def report_to() -> str:
    """Where to report a bug: the package's issue tracker when its metadata names one."""
    try:
        from importlib.metadata import metadata

        urls = metadata("exprgrad").get_all("Project-URL") or []
    except Exception:  # no metadata (a source checkout that was never installed)
        urls = []
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("issues", "bug tracker", "bugs", "tracker"):
            return url.strip()
    return "the exprgrad maintainers"


def environment() -> dict[str, str]:
    """The versions a bug report needs: exprgrad's, Python's, the platform's."""

    return {"exprgrad version": __version__,
            "Python version": f"{platform.python_version()} ({platform.python_implementation()})",
            "platform": platform.platform()}


def bug_report(err: BaseException, command: Sequence[str] | str,
               user_input: str | None = None) -> str:
    """The text shown for a bug in exprgrad: what it is, where to report it, and the details
    a report needs (versions, the command line, the input being handled, the traceback)."""
    shown = command if isinstance(command, str) else shlex.join(list(command))
    lines = [
        "exprgrad: internal error: this is a bug in exprgrad, not a mistake in your input.",
        f"Please report it to {report_to()} with everything below,",
        "and the .exg file if you can share it.",
        "",
        *(f"{key}: {value}" for key, value in environment().items()),
        f"command: {shown}",
    ]
    if user_input is not None:
        typed = user_input.rstrip("\n").splitlines() or [""]
        lines.append("input: " + typed[0])
        lines.extend("       " + more for more in typed[1:])
    kind = type(err).__qualname__
    if type(err).__module__ != "builtins":
        kind = f"{type(err).__module__}.{kind}"
    lines.append(f"exception: {kind}: {err}")
    lines.extend(traceback.format_exception(type(err), err, err.__traceback__))
    text = "\n".join(part.rstrip("\n") for part in lines)
    return "\n".join(_printable(line) for line in text.split("\n"))


def mark_as_bug(err: BaseException, where: str) -> None:
    """Add a note to ``err`` (shown under its traceback) saying that it is a bug in exprgrad,
    not a mistake in ``where``, with the versions and where to report it (Python 3.11+)."""
    versions = ", ".join(f"{key} {value}" for key, value in environment().items())
    note = (f"This is a bug in exprgrad, not a mistake in {where} ({versions}). "
            f"Please report it to {report_to()} with this traceback.")
    add_note = getattr(err, "add_note", None)
    if add_note is not None:
        add_note(note)

