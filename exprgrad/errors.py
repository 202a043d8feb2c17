"""The error types a user can cause, each able to show where in the source it happened.

Contract: every error raised for a user's mistake is an :class:`ExprgradError`. ``str(err)`` is
the one-line form ``file:line:col: message``; :meth:`ExprgradError.render` is the full display:
that line, the offending source line, a caret under the span, and a hint when there is one.
Subclasses also inherit the matching built-in exception so callers can catch either.
Internal invariants use ``assert``, never these types.
"""

from __future__ import annotations

from dataclasses import dataclass


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

    def with_source(self, filename: str, source: str) -> ExprgradError:
        """Attach the file name and text (if not yet known); returns self for chaining."""
        if self.source is None:
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
        if self.span is None:
            return self.filename
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
