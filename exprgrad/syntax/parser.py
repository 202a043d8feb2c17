"""Text to a small syntax tree, through the lark grammar ``grammar/exprgrad.lark``.

Contract: :func:`parse` returns a list of top-level statements (:class:`Def`, :class:`ParamDecl`,
:class:`NetDecl`, :class:`DataDecl`, :class:`TrainDecl`, :class:`ConstDecl`,
:class:`LayerDecl`) whose expressions are tuples
``(kind, span, ...)`` (see :class:`AstBuilder`), or raises :class:`ExprgradSyntaxError` with the
position, what was found and what was expected. The parse tree never leaves this module: lark's
transformer runs inside the LALR parser (on each reduction), so building the tree is iterative and
nesting depth is bounded only by the limits in :mod:`exprgrad.limits`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import lark
from lark import Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.indenter import Indenter

from ..errors import ExprgradLimitError, ExprgradSyntaxError, ExprgradValueError, Span
from ..limits import MAX_LINE_LENGTH, MAX_SOURCE_BYTES, MAX_TOKENS

Expr = tuple[Any, ...]


@dataclass
class Arg:
    name: str
    #: the dimensions as written (expressions: numbers or constants, resolved by lowering)
    shape: tuple[Expr, ...]
    span: Span


@dataclass
class Def:
    name: str
    args: list[Arg]
    body: list[Expr]
    span: Span


@dataclass
class ParamDecl:
    name: str
    #: the dimensions as written (expressions: numbers or constants, resolved by lowering)
    shape: tuple[Expr, ...]
    init: Expr
    span: Span


@dataclass
class NetDecl:
    name: str
    kind: str
    args: list[Expr]
    span: Span
    kind_span: Span


@dataclass
class DataDecl:
    name: str
    value: Expr
    span: Span


@dataclass
class TrainDecl:
    func: str
    data: list[tuple[str, Span]]
    options: dict[str, tuple[Any, Span]] = field(default_factory=dict)
    span: Span | None = None


@dataclass
class ConstDecl:
    """``N = 4`` at file level: a number known at compile time."""

    name: str
    value: Expr
    span: Span


@dataclass
class LayerDecl:
    """``layer Dense(nin, nout):`` and its indented body: a layer type, made into networks
    (each with its own parameters) by ``net d = Dense(3, 4)``."""

    name: str
    #: the layer's arguments (numbers known when a network is made), with their spans
    args: list[tuple[str, Span]]
    #: ConstDecl, ParamDecl, NetDecl and Def statements, in order
    body: list[Any]
    span: Span


Statement = Def | ParamDecl | NetDecl | DataDecl | TrainDecl | ConstDecl | LayerDecl


def grammar_text() -> str:
    """The grammar: shipped inside the package (wheel), or in the repository's ``grammar/``."""
    packaged = resources.files("exprgrad").joinpath("grammar/exprgrad.lark")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    repo = Path(__file__).resolve().parents[2] / "grammar" / "exprgrad.lark"
    return repo.read_text(encoding="utf-8")


def _span(tok: Token) -> Span:
    line = tok.line or 1
    col = tok.column or 1
    return Span(line, col, tok.end_line or line, tok.end_column or col + 1)


class AstBuilder(Transformer):  # type: ignore[type-arg]
    """Builds expression tuples and statement objects; method names are the grammar's aliases.

    Expression kinds: ``("num", span, value, text)``, ``("name", span, id)``,
    ``("str", span, text)``, ``("bin", span, op, a, b)``, ``("unary", span, op, a)``,
    ``("call", span, name, args, kwargs)``, ``("index", span, base, indices)``,
    ``("list", span, items)``; kwargs are ``(name, expr, span)``.
    Statement kinds inside a def: ``("assign", span, name, expr, augop_or_None)``,
    ``("unpack", span, [names], expr)``, ``("for", span, name, start, stop, [statements])``,
    ``("grad", span, name, expr)``, ``("return", span, exprs)``.
    """

    def number(self, c: list[Any]) -> Expr:
        return ("num", _span(c[0]), float(c[0]), str(c[0]))

    def name(self, c: list[Any]) -> Expr:
        return ("name", _span(c[0]), str(c[0]))

    def string(self, c: list[Any]) -> Expr:
        return ("str", _span(c[0]), str(c[0])[1:-1])

    def paren(self, c: list[Any]) -> Expr:
        return c[1]  # type: ignore[no-any-return]

    def vector(self, c: list[Any]) -> Expr:
        return ("list", _span(c[0]).merge(_span(c[2])), c[1] or [])

    def exprlist(self, c: list[Any]) -> list[Expr]:
        return [x for x in c if x is not None]

    subscript = exprlist

    def slice(self, c: list[Any]) -> Expr:
        return ("slice", _span(c[1]), c[0], c[2])

    def binop(self, c: list[Any]) -> Expr:
        return ("bin", _span(c[1]), str(c[1]), c[0], c[2])

    def unary(self, c: list[Any]) -> Expr:
        return ("unary", _span(c[0]), str(c[0]), c[1])

    def call(self, c: list[Any]) -> Expr:
        items = c[2] or []
        args = [x for x in items if x[0] != "kw"]
        kwargs = [(x[2], x[3], x[1]) for x in items if x[0] == "kw"]
        return ("call", _span(c[0]).merge(_span(c[3])), str(c[0]), args, kwargs)

    def callargs(self, c: list[Any]) -> list[Expr]:
        return [x for x in c if x is not None]

    def kwarg(self, c: list[Any]) -> Expr:
        return ("kw", _span(c[0]), str(c[0]), c[1])

    def index(self, c: list[Any]) -> Expr:
        return ("index", _span(c[1]).merge(_span(c[3])), c[0], c[2])

    # ---- statements inside a def
    def assign(self, c: list[Any]) -> Expr:
        return ("assign", _span(c[0]), str(c[0]), c[1], None)

    def unpack(self, c: list[Any]) -> Expr:
        names = [t for t in c if isinstance(t, Token)]
        exprs = [x for x in c if x is not None and not isinstance(x, Token)]
        value = exprs[0] if len(exprs) == 1 else ("tuple", exprs[0][1], exprs)
        return ("unpack", _span(names[0]).merge(_span(names[-1])), [str(t) for t in names],
                value)

    def augassign(self, c: list[Any]) -> Expr:
        return ("assign", _span(c[0]).merge(_span(c[1])), str(c[0]), c[2], str(c[1])[0])

    def grad_stmt(self, c: list[Any]) -> Expr:
        return ("grad", _span(c[0]), str(c[0]), c[1])

    def return_stmt(self, c: list[Any]) -> Expr:
        return ("return", _span(c[0]), [x for x in c[1:] if x is not None])

    # ---- top level
    def shape(self, c: list[Any]) -> tuple[tuple[Expr, ...], Span]:
        dims = tuple(x for x in c[1:-1] if isinstance(x, tuple))
        return dims, _span(c[0]).merge(_span(c[-1]))

    def layer_stmt(self, c: list[Any]) -> LayerDecl:
        # NAME, LPAR, [names], RPAR, COLON, body...
        body = [x for x in c[5:] if x is not None and not isinstance(x, Token)]
        return LayerDecl(str(c[0]), c[2] or [], body, _span(c[0]))

    def arg(self, c: list[Any]) -> Arg:
        shape = c[1][0] if c[1] is not None else ()
        return Arg(str(c[0]), shape, _span(c[0]))

    def arglist(self, c: list[Any]) -> list[Arg]:
        return [x for x in c if x is not None]

    def def_stmt(self, c: list[Any]) -> Def:
        body = [x for x in c[5:] if isinstance(x, tuple)]
        return Def(str(c[0]), c[2] or [], body, _span(c[0]))

    def param_stmt(self, c: list[Any]) -> ParamDecl:
        shape = c[1][0] if c[1] is not None else ()
        return ParamDecl(str(c[0]), shape, c[2], _span(c[0]))

    def net_stmt(self, c: list[Any]) -> NetDecl:
        return NetDecl(str(c[0]), str(c[1]), c[3] or [], _span(c[0]), _span(c[1]))

    def const_stmt(self, c: list[Any]) -> ConstDecl:
        return ConstDecl(str(c[0]), c[1], _span(c[0]))

    def for_stmt(self, c: list[Any]) -> Expr:
        # NAME, LPAR, start, [stop], RPAR, COLON, body...
        var, bounds = c[0], [x for x in c[2:4] if isinstance(x, tuple)]
        body = [x for x in c[6:] if isinstance(x, tuple)]
        start, stop = (("num", _span(var), 0.0, "0"), bounds[0]) if len(bounds) == 1 else bounds
        return ("for", _span(var), str(var), start, stop, body)

    def data_stmt(self, c: list[Any]) -> DataDecl:
        return DataDecl(str(c[0]), c[1], _span(c[0]))

    def names(self, c: list[Any]) -> list[tuple[str, Span]]:
        return [(str(t), _span(t)) for t in c if t is not None]

    def option(self, c: list[Any]) -> tuple[str, tuple[Any, Span]]:
        tok = c[1]
        value: Any
        if tok.type == "SIGNED_NUMBER":
            value = float(tok)
        elif tok.type == "STRING":
            value = str(tok)[1:-1]
        else:
            value = str(tok)
        return str(c[0]), (value, _span(c[0]).merge(_span(tok)))  # the span of 'key=value'

    def train_stmt(self, c: list[Any]) -> TrainDecl:
        options: dict[str, tuple[Any, Span]] = {}
        for key, (value, span) in (x for x in c[5:] if isinstance(x, tuple)):
            if key in options:
                raise ExprgradValueError(f"'{key}' is given twice", span,
                                         hint=f"the first is on line {options[key][1].line}")
            options[key] = (value, span)
        return TrainDecl(str(c[0]), c[2] or [], options, _span(c[0]))

    def start(self, c: list[Any]) -> list[Statement]:
        return [x for x in c if x is not None and not isinstance(x, Token)]

    def repl(self, c: list[Any]) -> Statement | Expr:
        return next(x for x in c if x is not None and not isinstance(x, Token))  # type: ignore[no-any-return]

    def repl_expr(self, c: list[Any]) -> Expr:
        return ("expr", c[0][1], c[0])


class _Indenter(Indenter):
    """Python-style INDENT/DEDENT tokens, with errors that carry a position.

    Rejects a line whose indentation mixes tabs and spaces, and a dedent to a column that no
    enclosing block used.
    """

    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        self.open_parens: list[Token] = []
        self.indent_chars: set[str] = set()
        return super().process(stream)

    def handle_NL(self, token: Token) -> Iterator[Token]:
        if self.paren_level > 0:
            return
        yield token
        indent_str = token.rsplit("\n", 1)[1]
        line = (token.end_line or 1)
        where = Span(line, 1, line, len(indent_str) + 1)
        self.indent_chars.update(ch for ch in indent_str if ch in " \t")
        if len(self.indent_chars) > 1:
            raise ExprgradSyntaxError("indentation mixes tabs and spaces", where,
                                      hint="indent with spaces only (4 per level)")
        indent = len(indent_str.expandtabs(self.tab_len))
        if indent > self.indent_level[-1]:
            self.indent_level.append(indent)
            yield Token.new_borrow_pos(self.INDENT_type, indent_str, token)
            return
        while indent < self.indent_level[-1]:
            self.indent_level.pop()
            yield Token.new_borrow_pos(self.DEDENT_type, indent_str, token)
        if indent != self.indent_level[-1]:
            raise ExprgradSyntaxError("this line's indentation matches no enclosing block", where,
                                      hint=f"indent by {self.indent_level[-1]} columns")

    def _process(self, stream: Iterator[Token]) -> Iterator[Token]:
        for token in stream:
            if token.type == self.NL_type:
                yield from self.handle_NL(token)
                continue
            yield token
            if token.type in self.OPEN_PAREN_types:
                self.paren_level += 1
                self.open_parens.append(token)
            elif token.type in self.CLOSE_PAREN_types:
                self.paren_level = max(0, self.paren_level - 1)
                if self.open_parens:
                    self.open_parens.pop()
        while len(self.indent_level) > 1:
            self.indent_level.pop()
            yield Token(self.DEDENT_type, "", 0, 0, 0, 0, 0, 0)


@functools.lru_cache(maxsize=2)
def _parser(start: str = "start") -> lark.Lark:
    """The parser of one start rule ("start": a file, "repl": one session input); one table per
    rule keeps each one's 'expected ...' sets its own."""
    return lark.Lark(grammar_text(), parser="lalr", postlex=_Indenter(),
                     transformer=AstBuilder(), maybe_placeholders=True, start=start)


_TOKEN_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "INT": "a whole number",
    "SIGNED_NUMBER": "a number", "STRING": 'a "string"', "_NL": "the end of the line",
    "_INDENT": "an indented block", "_DEDENT": "the end of the block", "LPAR": "'('",
    "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COLON": "':'", "COMMA": "','",
    "ADDOP": "'+' or '-'", "MULOP": "'*', '/' or '@'", "POWOP": "'**'", "AUGOP": "'+=', '-=', ...",
    "EQUAL": "'='", "RETURN": "'return'", "$END": "the end of the file",
}


def _describe_expected(expected: set[str]) -> str:
    words = sorted({_TOKEN_WORDS.get(e, _anon_word(e)) for e in expected})
    if len(words) > 6:
        words = words[:6] + ["..."]
    return ", ".join(words)


def _anon_word(term: str) -> str:
    pattern = _parser().get_terminal(term).pattern if term in _terminal_names() else None
    if pattern is not None and pattern.type == "str":
        return f"'{pattern.value}'"
    return term.lower()


@functools.lru_cache(maxsize=1)
def _terminal_names() -> frozenset[str]:
    return frozenset(t.name for t in _parser().terminals)


_TOKEN = re.compile(r"[A-Za-z0-9_.]+|[^\sA-Za-z0-9_.]")


def _check_size(text: str, first_line: int = 1) -> None:
    if len(text) > MAX_SOURCE_BYTES:
        raise ExprgradLimitError(f"the source is {len(text)} characters; the limit is "
                                 f"{MAX_SOURCE_BYTES}", Span(1, 1, 1, 2))
    tokens = sum(1 for _ in _TOKEN.finditer(text))
    if tokens > MAX_TOKENS:
        raise ExprgradLimitError(f"the source has {tokens} tokens; the limit is {MAX_TOKENS} "
                                 "(exprgrad.limits.MAX_TOKENS)", Span(1, 1, 1, 2),
                                 hint="split the program, or use vectors and networks, whose "
                                 "size does not grow the source")
    for number, line in enumerate(text.splitlines(), 1):
        if len(line) > MAX_LINE_LENGTH:
            raise ExprgradLimitError(
                f"line {number + first_line - 1} is {len(line)} characters long; the limit is "
                f"{MAX_LINE_LENGTH}",
                Span(number, MAX_LINE_LENGTH, number, MAX_LINE_LENGTH + 1),
                hint="split long expressions over several statements")


def parse(text: str, filename: str = "<string>") -> list[Statement]:
    """Parse exprgrad source text; raises ExprgradSyntaxError with file:line:col on bad input."""
    return _parse(text, filename, "start")  # type: ignore[no-any-return]


def parse_input(text: str, filename: str = "<repl>", first_line: int = 1) -> Statement | Expr:
    """Parse one session input: a top-level statement (:class:`Def`, ...), a binding
    ``("assign", span, name, expr, augop_or_None)`` or an expression ``("expr", span, expr)``.
    Spans count from line 1 of ``text``; ``first_line`` only numbers lines in messages."""
    return _parse(text, filename, "repl", first_line)


def shift_spans(tree: Any, lines: int, cols: int = 0) -> Any:
    """A copy of a statement or expression with every span moved down ``lines`` lines, and right
    ``cols`` columns on its first line (a session places an input typed on one of its lines,
    or an expression typed after a command word). Iterative: any nesting depth is fine."""

    def move(span: Span) -> Span:
        return Span(span.line + lines, span.col + (cols if span.line == 1 else 0),
                    span.end_line + lines, span.end_col + (cols if span.end_line == 1 else 0))

    def parts(x: Any) -> list[Any] | None:
        if isinstance(x, (tuple, list)):
            return list(x)
        if isinstance(x, dict):
            return list(x.values())
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return [getattr(x, f.name) for f in dataclasses.fields(x)]
        return None

    def rebuild(x: Any, new: list[Any]) -> Any:
        if isinstance(x, (tuple, list)):
            return type(x)(new)
        if isinstance(x, dict):
            return dict(zip(x, new))
        return dataclasses.replace(x, **{f.name: v for f, v in zip(dataclasses.fields(x), new)})

    stack: list[tuple[Any, bool]] = [(tree, False)]
    out: list[Any] = []
    while stack:
        x, done = stack.pop()
        if isinstance(x, Span):
            out.append(move(x))
            continue
        kids = parts(x)
        if kids is None:
            out.append(x)
        elif not done:
            stack.append((x, True))
            stack.extend((k, False) for k in reversed(kids))
        else:
            n = len(kids)
            new = out[len(out) - n:] if n else []
            del out[len(out) - n:]
            out.append(rebuild(x, new))
    return out[0]


def _parse(text: str, filename: str, start: str, first_line: int = 1) -> Any:
    if text.startswith("\ufeff"):  # a UTF-8 byte-order mark is not part of the program
        text = text[1:]
    try:
        _check_size(text, first_line)
        for number, line in enumerate(text.splitlines(), 1):
            bad = next((ch for ch in line if not ch.isprintable() and ch not in "\t\f\r"), None)
            if bad is not None:
                col = line.index(bad) + 1
                raise ExprgradSyntaxError(f"unexpected control character {bad!r}",
                                          Span(number, col, number, col + 1))
        return _parser(start).parse(text + "\n")
    except ExprgradSyntaxError as err:
        raise err.with_source(filename, text) from None
    except ExprgradLimitError as err:
        raise err.with_source(filename, text) from None
    except UnexpectedInput as err:
        raise _syntax_error(err, text, filename, start) from None


def _syntax_error(err: UnexpectedInput, text: str, filename: str, start: str = "start"
                  ) -> ExprgradSyntaxError:
    line = err.line if isinstance(err.line, int) and err.line > 0 else text.count("\n") + 1
    col = err.column if isinstance(err.column, int) and err.column > 0 else 1
    hint = None
    if isinstance(err, UnexpectedCharacters):
        pos = err.pos_in_stream or 0
        ch = text[pos] if pos < len(text) else "?"
        message = f"unexpected character {ch!r}"
        if ch == "'":
            hint = 'strings use double quotes: "like this"'
        elif ch in "=<>!":
            hint = "comparisons are written <, <=, >, >=, == and !="
        elif not ch.isascii():
            hint = "names and numbers use ASCII letters, digits and '_' only"
        span = Span(line, col, line, col + 1)
    elif isinstance(err, UnexpectedToken):
        tok = err.token
        found = {"$END": "end of file", "_NL": "end of line", "_INDENT": "indentation",
                 "_DEDENT": "end of block"}.get(tok.type, f"'{tok}'")
        message = f"unexpected {found}; expected {_describe_expected(set(err.expected))}"
        if tok.type == "_INDENT":
            line = tok.end_line or line
            col = 1
        elif tok.type in ("_NL", "$END", "_DEDENT"):
            # point just past the last thing on the previous line, where something is missing
            line, col = _end_of_previous(text, tok)
        width = max(1, len(str(tok))) if tok.type not in ("_NL", "_INDENT", "_DEDENT") else 1
        span = Span(line, col, line, col + width)
        unclosed = _unclosed_paren(start)
        if unclosed is not None and tok.type in ("_NL", "$END", "_DEDENT"):
            message = f"'{unclosed}' is never closed"
            span = _span(unclosed)
            hint = "close it, or finish the expression inside it"
            return ExprgradSyntaxError(message, span, filename=filename, source=text, hint=hint)
        if str(tok) == "=" and tok.type != "_NL":
            hint = "'=' binds a name at the start of a statement; compare with '=='"
        if tok.type == "_INDENT":
            hint = "only the statements of a def, a for loop or a layer are indented"
        elif "RPAR" in err.expected and tok.type in ("_NL", "$END", "_DEDENT"):
            hint = "a parenthesis is not closed"
        elif "COLON" in err.expected and _opens_block(text, line):
            hint = "a def, for or layer line ends with ':'"
    elif isinstance(err, UnexpectedEOF):
        message = "unexpected end of the file"
        span = Span(line, col, line, col + 1)
    else:  # pragma: no cover - lark has no other kinds
        message = str(err)
        span = Span(line, col, line, col + 1)
    return ExprgradSyntaxError(message, span, filename=filename, source=text, hint=hint)


def _opens_block(text: str, line: int) -> bool:
    """Whether line ``line`` of ``text`` starts a def, a for loop or a layer type."""
    lines = text.splitlines()
    words = lines[line - 1].split() if 1 <= line <= len(lines) else []
    return bool(words) and words[0] in ("def", "for", "layer")


def _unclosed_paren(start: str) -> Token | None:
    postlex = _parser(start).options.postlex
    parens = getattr(postlex, "open_parens", None)
    return parens[-1] if parens else None


def _end_of_previous(text: str, tok: Token) -> tuple[int, int]:
    lines = text.splitlines()
    line = min(tok.line or 1, max(1, len(lines)))
    while line > 1 and (line > len(lines) or not lines[line - 1].split("#")[0].strip()):
        line -= 1
    content = lines[line - 1].split("#")[0].rstrip() if lines else ""
    return line, len(content) + 1
