"""`exprgrad repl`: the notebook's interactive session, on compiled code.

Contract: a :class:`Session` takes the same statements as a file (``def`` blocks, ``param``,
``net``, ``data``), plus ``NAME = EXPR`` (evaluated at once: the variable holds the value, so
later rebinding never changes earlier results, as in Python), a bare expression (evaluated and
printed) and the ``:commands`` listed in :data:`HELP`. A mistake never ends the session: it is
reported as in files, located at ``<repl>:LINE:COL`` where LINE counts the lines typed so far.
Nor does a bug in exprgrad (any other exception, see :func:`exprgrad.errors.is_bug`): it is
reported as one, with the input, the versions and the traceback, and the next input runs; an
``OSError`` (a file it may not write) is one line, like a mistake.

:func:`repl_main` runs a session on a terminal with prompt_toolkit (line editing, history in
``~/.exprgrad_history`` or ``$EXPRGRAD_HISTORY``, tab completion of names, builtins and commands;
Ctrl-C cancels the current input, Ctrl-D leaves), or, when standard input is not a terminal, reads
statements without prompts and exits 1 if any of them failed, 70 if any met a bug in exprgrad.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..check.checker import check_function, check_rules, element_symbols, to_sympy
from ..emit.load import entry_point, module_from_code
from ..emit.scalar import generate
from ..errors import (
    EXIT_BUG,
    ExprgradError,
    ExprgradNameError,
    ExprgradValueError,
    Span,
    bug_report,
    is_bug,
    system_error_message,
)
from ..ir.node import reachable
from ..ir.ops import BUILTINS
from ..lower.lowering import check_name, compile_program, read_source
from ..run.evaluate import format_value
from .drawing import dot_source, render

HELP = """\
statements: def NAME(ARGS): ... (end the block with an empty line), param, net, data,
            NAME = EXPR (evaluated now), NAME += EXPR, or an EXPR to print its value
:grad EXPR          the gradient of EXPR with respect to every variable it depends on
:code NAME|EXPR     the generated Python for a function or an expression
:sympy EXPR         sympy's form of EXPR and of its derivatives
:check NAME         check a function's gradient against sympy and finite differences
:graph EXPR [OUT]   draw EXPR with values and gradients (default OUT: repl_graph.svg)
:load FILE.exg      load a file's definitions
:vars               list variables and definitions
:reset              forget everything
:help               this text
:quit               leave (Ctrl-D works too)"""

COMMANDS = (":grad", ":code", ":sympy", ":check", ":graph", ":load", ":vars", ":reset", ":help",
            ":quit")
_DECL = ("def ", "param ", "net ", "data ")


@dataclass
class _Chunk:
    text: str
    repl_line: int  # the session line where the chunk started
    file_line: int  # the line in the accumulated program where it starts


@dataclass
class Session:
    out: Callable[[str], None] = print
    err: Callable[[str], None] = field(default=lambda text: print(text, file=sys.stderr))
    chunks: list[_Chunk] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    line: int = 0  # lines consumed so far
    failures: int = 0  # inputs that failed, for any reason
    bugs: int = 0  # inputs that met a bug in exprgrad
    command: str = "exprgrad repl"  # shown in a bug report

    # ---- the accumulated program -------------------------------------------------------
    def program_text(self) -> str:
        return "".join(c.text for c in self.chunks)

    def _next_file_line(self) -> int:
        return sum(c.text.count("\n") for c in self.chunks) + 1

    def _compile(self, extra: str = "", extra_line: int = 0,
                 expression: tuple[str, int, int] | None = None) -> Any:
        """Lower the accumulated program plus ``extra`` (typed at session line ``extra_line``).

        ``expression`` = (typed line, column where the expression starts in it, the column
        where it starts in ``extra``'s second line) when ``extra`` wraps a typed expression in a
        generated def; errors are then reported against the typed line.
        """

        text = self.program_text() + extra
        try:
            return compile_program(text, "<repl>", allow_empty=True)
        except ExprgradError as e:
            raise self._relocate(e, extra, extra_line, expression) from None

    def _relocate(self, e: ExprgradError, extra: str, extra_line: int,
                  expression: tuple[str, int, int] | None) -> ExprgradError:
        if e.span is None:
            e.source = None
            return e
        start_extra = self._next_file_line()
        line, col = e.span.line, e.span.col
        if extra and line >= start_extra:
            offset = line - start_extra
            if expression is not None:
                typed, typed_col, wrapped_col = expression
                new_line, text_line = extra_line, typed
                col = max(1, col - wrapped_col + typed_col) if offset >= 1 else typed_col + 1
            else:
                new_line = extra_line + offset
                lines = extra.splitlines()
                text_line = lines[offset] if offset < len(lines) else ""
        else:
            chunk = next((c for c in reversed(self.chunks) if c.file_line <= line), None)
            new_line = (chunk.repl_line + line - chunk.file_line) if chunk else line
            all_lines = self.program_text().splitlines()
            text_line = all_lines[line - 1] if line - 1 < len(all_lines) else ""
        width = max(1, e.span.end_col - e.span.col) if e.span.end_line == e.span.line else 1
        e.span = Span(new_line, col, new_line, col + width)
        e.lineno, e.offset = new_line, col
        e.filename = "<repl>"
        if expression is not None:  # the generated def's name means nothing to the user
            e.message = re.sub(r" in 'repl\d*'", "", e.message)
        e.source = "\n" * (max(1, new_line) - 1) + text_line + "\n"
        e.text = text_line
        return e

    # ---- input -------------------------------------------------------------------------
    def feed(self, text: str, first_line: int) -> bool:
        """Run one complete input (a statement, possibly a multi-line def); True on success."""
        try:
            self._run(text, first_line)
            return True
        except _Quit:
            raise
        except Exception as e:  # a mistake, the system's refusal, or a bug: the session goes on
            self.failures += 1
            if isinstance(e, ExprgradError) and not is_bug(e):
                self.err(e.render())
            elif isinstance(e, OSError):
                self.err(system_error_message(e))
            else:
                self.bugs += 1
                self.err(bug_report(e, self.command, user_input=text))
            return False

    def _run(self, text: str, first_line: int) -> None:
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            return
        if stripped.startswith(":"):
            self._command(text.rstrip("\n"), first_line)
            return
        if stripped.startswith(_DECL) or stripped.startswith("train "):
            self._declare(text if text.endswith("\n") else text + "\n", first_line)
            return
        typed = text.rstrip("\n")
        name, op, start = _split_assignment(typed)
        if name is not None:
            self._assign(name, op, typed, start, first_line)
            return
        indent = len(typed) - len(typed.lstrip())
        self.out(_show(self._evaluate(typed.strip(), first_line, typed, indent)))

    def _declare(self, text: str, first_line: int) -> None:
        chunk = _Chunk(text, first_line, self._next_file_line())
        program = self._compile(text, first_line)
        for name in list(program.functions) + list(program.params) + list(program.nets) + list(
                program.data):
            self.values.pop(name, None)
        self.chunks.append(chunk)

    def _assign(self, name: str, op: str | None, typed: str, start: int, line: int) -> None:
        col = typed.index(name) + 1
        span = Span(line, col, line, col + len(name))
        source = "\n" * (line - 1) + typed + "\n"
        try:
            check_name(name, span, "variable")
            program = self._compile()
            if name in program.functions or name in program.params or name in program.nets:
                raise ExprgradNameError(f"'{name}' is already defined as a function, parameter "
                                        "or network", span)
            if op is not None and name not in self.values:
                raise ExprgradNameError(f"'{name}' has no value yet", span,
                                        hint=f"write '{name} = ...' first")
        except ExprgradError as e:
            raise e.with_source("<repl>", source) from None
        expr = typed[start:]
        if op is not None:
            wrapped = f"{name} {op} ("
            self.values[name] = self._evaluate(wrapped + expr + ")", line, typed,
                                               start - len(wrapped))
        else:
            self.values[name] = self._evaluate(expr, line, typed, start)

    def _wrapper(self, expr: str, fname: str) -> tuple[str, int]:
        args = []
        for name, value in self.values.items():
            shape = _shape(value)
            args.append(name + ("[" + ", ".join(map(str, shape)) + "]" if shape else ""))
        return f"def {fname}({', '.join(args)}):\n    return {expr}\n", len("    return ")

    def _function_name(self, taken: set[str]) -> str:
        n = 0
        while True:
            name = "repl" if n == 0 else f"repl{n}"
            if name not in taken and name not in self.values:
                return name
            n += 1

    def _expression_program(self, expr: str, line: int, typed: str, col: int
                            ) -> tuple[Any, str]:
        """Compile ``expr`` (typed at ``col`` of ``typed``) as a def of every variable."""
        if "\n" in expr:
            raise ExprgradValueError("an expression fits on one line", Span(line, 1, line, 2))
        base = self._compile()
        taken = set(base.functions) | set(base.params) | set(base.nets) | set(base.data)
        fname = self._function_name(taken | {n + s for n in taken for s in ("_grad", "_hess")})
        text, shift = self._wrapper(expr, fname)
        program = self._compile(text, line, (typed, col, shift))
        return program, fname

    def _module(self, program: Any) -> Any:
        return module_from_code(generate(program), "exg_repl", "<repl>")

    def _args(self, program: Any, fname: str) -> list[Any]:
        fn = program.functions[fname]
        return [self.values[a] for a in fn.arg_names]

    def _evaluate(self, expr: str, line: int, typed: str, col: int) -> Any:
        program, fname = self._expression_program(expr, line, typed, col)
        fn = program.functions[fname]
        module = self._module(program)
        f = entry_point(module, fname, "value")
        args = self._args(program, fname)
        return f(module.init_params(0), *args) if fn.uses_params else f(*args)

    # ---- commands ----------------------------------------------------------------------
    def _command(self, typed: str, line: int) -> None:
        text = typed.strip()
        word, _, rest = text.partition(" ")
        rest = rest.strip()
        col = typed.index(rest) if rest else 0
        if word in (":quit", ":q", ":exit"):
            raise _Quit()
        if word == ":help":
            self.out(HELP)
        elif word == ":vars":
            for name, value in self.values.items():
                self.out(f"{name} = {_show(value)}")
            program = self._compile()
            for name, fn in program.functions.items():
                self.out(f"def {name}({', '.join(fn.arg_names)})")
            for name in program.params:
                self.out(f"param {name}")
            for name in program.nets:
                self.out(f"net {name}")
        elif word == ":reset":
            self.chunks.clear()
            self.values.clear()
            self.out("forgot everything")
        elif word == ":load":
            self._load(rest)
        elif word == ":grad":
            self._grad(rest, line, typed, col)
        elif word == ":code":
            self._code(rest, line, typed, col)
        elif word == ":sympy":
            self._sympy(rest, line, typed, col)
        elif word == ":check":
            self._check(rest)
        elif word == ":graph":
            self._graph(rest, line, typed, col)
        else:
            raise ExprgradValueError(f"unknown command {word}", Span(line, 1, line, len(word) + 1),
                                     hint="type :help for the list").with_source(
                "<repl>", "\n" * (line - 1) + text + "\n")

    def _need(self, rest: str, what: str, line: int) -> None:
        if not rest:
            raise ExprgradValueError(f"this command needs {what}", Span(line, 1, line, 2),
                                     hint="type :help for the list")

    def _load(self, path: str) -> None:
        if not path:
            raise ExprgradValueError(":load needs a file name")
        text = read_source(path)
        compile_program(text, path)  # errors are reported against the file itself
        combined = self.program_text() + (text if text.endswith("\n") else text + "\n")
        compile_program(combined, "<repl>")
        self.chunks.append(_Chunk(text if text.endswith("\n") else text + "\n", 0,
                                  self._next_file_line()))
        program = compile_program(combined, "<repl>")
        self.out(f"loaded {path}: " + ", ".join(
            [f"def {n}" for n in program.functions] + [f"param {n}" for n in program.params]
            + [f"net {n}" for n in program.nets] + [f"data {n}" for n in program.data]))

    def _grad(self, expr: str, line: int, typed: str, col: int) -> None:
        self._need(expr, "an expression", line)

        program, fname = self._expression_program(expr, line, typed, col)
        fn = program.functions[fname]
        module = self._module(program)
        args = self._args(program, fname)
        g = entry_point(module, fname, "grad")
        if fn.uses_params:
            value, grads = g(module.init_params(0), *args)
            self.out(f"value {_show(value)}")
            for name, d in zip(module.PARAM_NAMES, grads):
                self.out(f"  d/d{name} = {_show(d)}")
            return
        value, grads = g(*args)
        used = {n.id for n in reachable(fn.outputs) if n.op == "input"}
        self.out(f"value {_show(value)}")
        shown = False
        for node, name, d in zip(fn.inputs, fn.arg_names, grads):
            if node.id in used:
                self.out(f"  d/d{name} = {_show(d)}")
                shown = True
        if not shown:
            self.out("  (depends on no variable)")

    def _code(self, target: str, line: int, typed: str, col: int) -> None:
        self._need(target, "a function name or an expression", line)

        program = self._compile()
        if target in program.functions:
            only = _only(program, target)
            code = generate(only)
        else:
            program, fname = self._expression_program(target, line, typed, col)
            code = generate(_only(program, fname))
        body = code[code.index("\ndef ", code.index("def init_params")) + 1:]
        self.out(body.rstrip())

    def _sympy(self, expr: str, line: int, typed: str, col: int) -> None:
        self._need(expr, "an expression", line)
        import sympy


        program, fname = self._expression_program(expr, line, typed, col)
        fn = program.functions[fname]
        leaves = {n.id: element_symbols(a, s)
                  for n, a, s in zip(fn.inputs, fn.arg_names, fn.arg_shapes)}
        for pt in program.params.values():
            leaves[pt.node.id] = element_symbols(pt.name, pt.node.shape)
        elems = to_sympy(fn.outputs, leaves)[0]
        if len(elems) != 1:
            self.out(str(elems))
            return
        e = elems[0]
        self.out(str(e))
        for s in sorted(e.free_symbols, key=str):
            self.out(f"  d/d{s} = {sympy.simplify(sympy.diff(e, s))}")

    def _check(self, name: str) -> None:
        program = self._compile()
        if name not in program.functions:
            raise ExprgradValueError(f"no function '{name}'",
                                     hint="functions: " + ", ".join(program.functions))
        module = self._module(program)
        lines = check_rules(program, name) + check_function(program, module, name).lines
        for item in lines:
            self.out(item.text())
        if any(item.status == "mismatch" for item in lines):
            raise ExprgradValueError(f"'{name}' has a wrong derivative")

    def _graph(self, rest: str, line: int, typed: str, col: int) -> None:
        self._need(rest, "an expression", line)

        expr, output = rest, "repl_graph.svg"
        parts = rest.rsplit(" ", 1)
        if len(parts) == 2 and parts[1].endswith((".svg", ".png", ".pdf", ".dot")):
            expr, output = parts
        program, fname = self._expression_program(expr, line, typed, col)
        fn = program.functions[fname]
        at = {a: self.values[a] for a in fn.arg_names}
        render(dot_source(program, fname, at=at), output)
        self.out(f"wrote {output}")


class _Quit(Exception):
    pass


def _only(program: Any, name: str) -> Any:
    from dataclasses import replace

    return replace(program, functions={name: program.functions[name]})


def _split_assignment(text: str) -> tuple[str | None, str | None, int]:
    """``x = e`` -> (x, None, start of e); ``x += e`` -> (x, '+', start of e); else (None, ...)."""
    m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*([-+*/]?)=(?!=)\s*", text)
    if not m:
        return None, None, 0
    return m.group(1), (m.group(2) or None), m.end()


def _shape(value: Any) -> tuple[int, ...]:
    if isinstance(value, list):
        inner = _shape(value[0]) if value else ()
        return (len(value),) + inner
    return ()


def _show(value: Any) -> str:
    return format_value(value)


# ---------------------------------------------------------------------------------------------


def _is_block_start(line: str) -> bool:
    s = line.strip()
    return s.startswith("def ") and s.endswith(":")


def run_script(session: Session, stream: Any) -> int:
    """Statements from a non-terminal stream, without prompts; 1 if any failed."""
    pending: list[str] = []
    start = 0
    lineno = 0

    def flush() -> bool:
        nonlocal pending
        if pending:
            text = "".join(pending)
            pending = []
            return session.feed(text, start)
        return True

    try:
        for raw in stream:
            lineno += 1
            session.line = lineno
            line = raw if raw.endswith("\n") else raw + "\n"
            if pending:
                if line.strip() == "" or line[:1] in " \t":
                    if line.strip():
                        pending.append(line)
                        continue
                    flush()
                    continue
                flush()
            if _is_block_start(line):
                pending = [line]
                start = lineno
                continue
            session.feed(line, lineno)
        flush()
    except _Quit:
        pass
    return EXIT_BUG if session.bugs else 1 if session.failures else 0


def run_terminal(session: Session) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import Completer, Completion
    from prompt_toolkit.history import FileHistory, InMemoryHistory


    class _Names(Completer):
        def get_completions(self, document: Any, complete_event: Any) -> Iterator[Completion]:
            word = document.get_word_before_cursor(WORD=True)
            if not word:
                return
            names = set(BUILTINS) | set(session.values) | set(COMMANDS) | {
                "def", "return", "param", "net", "data", "MLP", "Layer", "Neuron"}
            try:
                program = session._compile()
                names |= set(program.functions) | set(program.params) | set(program.nets)
            except Exception:  # best effort: the next input reports any error, bug or not
                pass
            for name in sorted(names):
                if name.startswith(word) and name != word:
                    yield Completion(name, start_position=-len(word))

    history_path = os.environ.get("EXPRGRAD_HISTORY", str(Path.home() / ".exprgrad_history"))
    history: Any = InMemoryHistory()
    try:  # only a regular file (a FIFO would block); otherwise this session keeps no history
        if not Path(history_path).exists() or Path(history_path).is_file():
            Path(history_path).touch(exist_ok=True)
            history = FileHistory(history_path)
    except OSError:
        pass
    prompt: PromptSession[str] = PromptSession(history=history, completer=_Names())
    print("exprgrad repl: :help lists the commands, Ctrl-D leaves")
    lineno = 0
    while True:
        try:
            text = prompt.prompt(">>> ")
            lineno += 1
            start = lineno
            if _is_block_start(text):
                lines = [text + "\n"]
                while True:
                    more = prompt.prompt("... ")
                    lineno += 1
                    if not more.strip():
                        break
                    lines.append(more + "\n")
                text = "".join(lines)
            session.feed(text, start)
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        except _Quit:
            break
    return 0


def repl_main(path: str | None = None) -> int:
    session = Session(command=shlex.join(["exprgrad", "repl", *([path] if path else [])]))
    if path:
        if not session.feed(f":load {path}", 0):
            return EXIT_BUG if session.bugs else 2
    if sys.stdin.isatty() and sys.stdout.isatty():
        return run_terminal(session)
    return run_script(session, sys.stdin)
