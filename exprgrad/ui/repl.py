"""`exprgrad repl`: the notebook as a session, on the IR.

Contract: a :class:`Session` takes one input at a time: the statements of a file (``def``
blocks, ``param``, ``net``, ``data``), ``train f(xs, ys): ...`` (run at once: it updates the
session's parameters), ``NAME = EXPR`` / ``NAME += EXPR`` (the variable holds the value *and how
it was computed*, as the notebook's ``Value``), ``A, B = EXPR`` (unpacking), a ``for`` loop (its
block runs once per value of its variable; all of it or nothing), a bare expression (printed),
and the ``:commands`` of :data:`HELP`. The state is an :class:`~exprgrad.lower.session.Environment`:
each input is lowered against it, so an input costs the same at any point of a session, and
completion reads names from it without compiling anything.

Nothing but ``:quit`` or Ctrl-D ends a session: a mistake is reported as in files, located at
``<repl>:LINE:COL`` (LINE counts the lines read so far) or in the loaded file; a value that cannot
be computed is a mistake too; Ctrl-C cancels the input or interrupts the work and returns to the
prompt; ``:sympy`` and ``:check`` have a time budget (:data:`BUDGET` seconds); a bug in exprgrad
(see :func:`exprgrad.errors.is_bug`) is reported as one, with the input, the versions and the
traceback, and the next input runs; an ``OSError`` (a file it may not write) is one line.

:func:`repl_main` runs a session on a terminal with prompt_toolkit (line editing, history in
``~/.exprgrad_history`` or ``$EXPRGRAD_HISTORY``, tab completion), or, when standard input is not
a terminal, reads inputs without prompts and exits 1 if any failed, 70 if any met a bug.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..emit.build import module_of
from ..emit.module import PARAM_HELPERS, initial_params
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
from ..gradcheck.checker import (
    Budget,
    check_function,
    check_rules,
    element_symbols,
    to_sympy,
    within,
)
from ..ir.diff import diff_args
from ..ir.node import Node, reachable
from ..ir.ops import BUILTINS, HELPERS
from ..lower.lowering import LANGUAGE_WORDS, compile_program, read_source
from ..lower.session import DECLARATIONS, Environment, Origin, Partial, located, nest
from ..run.config import config_from_program
from ..run.evaluate import format_value
from ..run.progress import Progress
from ..run.training import train
from ..syntax.parser import (
    ConstDecl,
    DataDecl,
    Def,
    LayerDecl,
    NetDecl,
    ParamDecl,
    TrainDecl,
    parse,
    parse_input,
    shift_spans,
)
from .check_cmd import CHECK_HINT
from .drawing import MAX_DRAW_NODES, dot_lines, render

#: seconds of sympy work one ``:sympy`` or ``:check`` may take
BUDGET = 10.0

HELP = """\
statements  def NAME(ARGS): ... and layer NAME(ARGS): ... (end a block with an empty line),
            param, net, data,
            NAME = EXPR (the variable remembers how it was computed), NAME += EXPR,
            A, B = EXPR (a def's two results, a vector [2]) or A, B = EXPR, EXPR,
            for I in range(N): ... (runs its block with I = 0 .. N-1; end it with an empty line),
            EXPR (prints its value), train F(DATA, ...): steps=N, lr=R (updates the parameters)
:grad EXPR          d EXPR / d every named value, variable and parameter it was computed from
:backward EXPR      the same, quietly: keeps the parameters' part for :step
:step LR            p += -LR * dp for every parameter of the last :grad/:backward (once)
:params [PREFIX]    parameters by name, with values (and gradients after :grad)
:graph EXPR [OUT]   draw how EXPR was computed, data and grad in each node (default repl_graph.svg)
:code NAME          the generated Python for a def
:sympy EXPR         sympy's form of EXPR and its derivatives (10 s budget)
:check NAME         check a def's gradient against sympy and finite differences (10 s budget)
:const NAME         treat a variable as a constant (no gradient reported for it)
:load FILE.exg      load a file's definitions (later definitions replace earlier ones); its
                    parameters start as the file's init_params(0), as in eval and train
:vars               variables and definitions
:reset              forget everything
:help               this text
:quit               leave (Ctrl-D works too)"""

COMMANDS = (":grad", ":backward", ":step", ":params", ":graph", ":code", ":sympy", ":check",
            ":const", ":load", ":vars", ":reset", ":help", ":quit")


@dataclass
class Session:
    out: Callable[[str], None] = print
    err: Callable[[str], None] = field(default=lambda text: print(text, file=sys.stderr))
    env: Environment = field(default_factory=lambda: Environment(initial_params))
    line: int = 0  # lines consumed so far
    failures: int = 0  # inputs that failed, for any reason
    bugs: int = 0  # inputs that met a bug in exprgrad
    command: str = "exprgrad repl"  # shown in a bug report

    def __post_init__(self) -> None:
        # nothing typed can move the terminal's cursor or retitle it: control characters in
        # anything shown (a path, a name echoed in a message) are shown as '?'
        out, err = self.out, self.err
        self.out = lambda text: out(_visible(text))
        self.err = lambda text: err(_visible(text))

    # ---- input -------------------------------------------------------------------------
    def feed(self, text: str, first_line: int) -> bool:
        """Run one complete input (a statement, possibly a multi-line def); True on success."""
        try:
            self._run(text, first_line)
            return True
        except _Quit:
            raise
        except KeyboardInterrupt:
            self.failures += 1
            self.err("interrupted")
            return False
        except Exception as e:  # a mistake, the system's refusal, or a bug: the session goes on
            self.failures += 1
            if isinstance(e, ExprgradError) and not is_bug(e):
                if e.span is None and e.filename in ("<string>", "<repl>") and first_line > 0:
                    typed = text.rstrip("\n")  # located at the whole input
                    e.span = Span(first_line, 1, first_line, len(typed.split("\n")[0]) + 1)
                    e.filename, e.source = "<repl>", self._origin(typed, first_line).source
                    e.text = e.source_line()
                self.err(e.render())
            elif isinstance(e, OSError):
                self.err(system_error_message(e))
            else:
                self.bugs += 1
                self.err(bug_report(e, self.command, user_input=text))
            return False

    def _origin(self, typed: str, first_line: int) -> Origin:
        return Origin("<repl>", "\n" * max(0, first_line - 1) + typed)

    def _parse(self, text: str, first_line: int, col: int, typed: str) -> Any:
        """Parse ``text``, which starts at column ``col`` + 1 of line ``first_line`` of the
        session (``typed`` is the whole input); spans and errors point into the session."""
        try:
            tree = parse_input(text, "<repl>", first_line)
        except ExprgradError as err:
            if err.span is not None:
                s = err.span
                err.span = Span(s.line + first_line - 1, s.col + (col if s.line == 1 else 0),
                                s.end_line + first_line - 1,
                                s.end_col + (col if s.end_line == 1 else 0))
                err.lineno, err.offset = err.span.line, err.span.col
            err.filename, err.source = "<repl>", self._origin(typed, first_line).source
            err.text = err.source_line()
            raise
        return shift_spans(tree, first_line - 1, col)

    def _run(self, text: str, first_line: int) -> None:
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            return
        typed = text.rstrip("\n")
        if stripped.startswith(":"):
            self._command(typed, first_line)
            return
        tree = self._parse(text, first_line, 0, typed)
        origin = self._origin(typed, first_line)
        env = self.env
        if isinstance(tree, DECLARATIONS):
            for said in env.declare(tree, origin):
                self.out(said)
        elif isinstance(tree, TrainDecl):
            self._train(tree, origin)
        elif tree[0] in ("assign", "unpack", "for"):
            env.execute(tree, origin)
        else:
            self.out(_show(env.value(env.expression(tree[2], origin))))

    def _expression(self, rest: str, typed: str, line: int, what: str, col: int) -> Node:
        """The node of the expression ``rest`` typed after a command word in ``typed``."""
        if not rest:
            raise ExprgradValueError(f"this command needs {what}",
                                     Span(line, 1, line, len(typed.split()[0]) + 1),
                                     filename="<repl>", source=self._origin(typed, line).source,
                                     hint="type :help for the list")
        tree = self._parse(rest, line, col, typed)
        origin = self._origin(typed, line)
        if isinstance(tree, tuple) and tree[0] == "expr":
            return self.env.expression(tree[2], origin)
        span = tree[1] if isinstance(tree, tuple) else Span(line, col + 1, line, col + 2)
        raise ExprgradValueError(f"this command takes {what}", span, filename="<repl>",
                                 source=origin.source)

    # ---- commands ----------------------------------------------------------------------
    def _command(self, typed: str, line: int) -> None:
        words = re.match(r"\s*(\S+)\s*(.*?)\s*$", typed)
        assert words is not None, "a command has a word"
        word, rest = words.group(1), words.group(2)
        col = words.start(2)  # where the rest starts in the typed line (0-based)
        env = self.env
        if word in (":quit", ":q", ":exit"):
            raise _Quit()
        if word == ":help":
            self.out(HELP)
        elif word == ":vars":
            self._vars()
        elif word == ":reset":
            self.env = Environment(initial_params)
            self.out("forgot everything")
        elif word == ":load":
            self._load(rest)
        elif word in (":grad", ":backward"):
            node = self._expression(rest, typed, line, "an expression", col)
            partials = env.gradient(node)
            if word == ":grad":
                self._print_gradient(node, rest, partials)
            else:
                params = [p for p in partials if p.kind == "param"]
                n = sum(len(p.grad) for p in params)
                value = f"{rest} = {_show(env.value(node))}"
                if not n:
                    self.out(f"{value}; it depends on no parameter")
                elif all(env.is_current(p.node) for p in params):
                    self.out(f"{value}; gradient of {n} parameter element(s) ready for :step")
                else:
                    self.out(f"{value}; gradient of {n} parameter element(s), but for values the "
                             "parameters had before the last update: :step will refuse it "
                             "(compute the loss again first)")
        elif word == ":step":
            self._step(rest, typed, line, col)
        elif word == ":params":
            self._params(rest)
        elif word == ":const":
            for name in rest.split():
                env.mark_constant(name)
        elif word == ":code":
            self._code(rest)
        elif word == ":sympy":
            self._sympy(self._expression(rest, typed, line, "an expression", col))
        elif word == ":check":
            self._check(rest)
        elif word == ":graph":
            output = "repl_graph.svg"
            parts = rest.rsplit(None, 1)
            if len(parts) == 2 and _looks_like_path(parts[1]):
                rest, output = parts[0].rstrip(), parts[1]
            self._graph(self._expression(rest, typed, line, "an expression", col), output)
        else:
            raise ExprgradValueError(f"unknown command {word}", Span(line, 1, line, len(word) + 1),
                                     filename="<repl>", source=self._origin(typed, line).source,
                                     hint="type :help for the list")

    def _print_gradient(self, root: Node, typed: str, partials: list[Partial]) -> None:
        env = self.env
        name = env.label(root) if root.id in env.labels and env.label(root) == typed else None
        shown = _show(env.value(root))
        self.out(f"{name} = {shown}" if name else f"value {shown}")
        top = f"d{name}" if name else ("d" if root.shape == () else "d(sum)")
        if not partials:
            self.out("  (depends on no variable: numbers typed into an expression are "
                     "constants; bind them to names first, e.g. 'x1 = 2.0', to see gradients)")
        for p in partials:
            if p.kind == "param":
                for element, g in zip(env.element_labels(p.node), p.grad):
                    self.out(f"  {top}/d{element} = {_show(g)}")
            else:
                self.out(f"  {top}/d{p.label or '(unnamed)'} = "
                         f"{_show(nest(p.grad, p.node.shape))}")

    def _step(self, rest: str, typed: str, line: int, col: int) -> None:
        try:
            lr = float(rest)
        except ValueError:
            raise ExprgradValueError("':step' takes a learning rate, e.g. ':step 0.05'",
                                     Span(line, col + 1, line, col + 1 + max(1, len(rest))),
                                     filename="<repl>",
                                     source=self._origin(typed, line).source) from None
        updated = self.env.step(lr)
        n = sum(len(self.env.param_values[t]) for t in updated)
        self.out(f"updated {n} parameter element(s) of {_owners(self.env, updated)} "
                 f"(lr {lr:g})")

    def _params(self, prefix: str) -> None:
        env = self.env
        shown = 0
        for tensor, index in env.program.param_order:
            element = env.program.params[tensor].element_names[index]
            if not element.startswith(prefix):
                continue
            text = f"{element} = {_show(env.param_values[tensor][index])}"
            grad = env.param_grads.get(tensor)
            if grad is not None and env.is_current(grad[0]):
                text += f"   grad {_show(grad[1][index])}"
            self.out(text)
            shown += 1
        if not shown:
            self.out("(no parameters" + (f" named {prefix}...)" if prefix else ")"))

    def _vars(self) -> None:
        env = self.env
        for name, node in env.bindings.items():
            self.out(f"{name} = {_show(env.value(node))}")
        program = env.program
        for name, fn in program.functions.items():
            args = [a + (f"[{', '.join(map(str, shape))}]" if shape else "")
                    for a, shape in zip(fn.arg_names, fn.arg_shapes)]
            self.out(f"def {name}({', '.join(args)})")
        for name in program.nets:
            self.out(f"net {name}")
        nets = {t for n in program.nets.values() for t in n.tensor_names}
        for name in program.params:
            if name not in nets:
                self.out(f"param {name}")
        for name in program.data:
            self.out(f"data {name}")
        for name, layer in program.layer_types.items():
            self.out(f"layer {name}({', '.join(arg for arg, _ in layer.args)})")
        for name, value in self.env.lowerer.constants.items():
            self.out(f"{name} = {value:g} (constant)")

    def _load(self, path: str) -> None:
        if not path:
            raise ExprgradValueError(":load needs a file name")
        text = read_source(path)
        alone = compile_program(text, path)  # the file on its own first: its mistakes, its lines
        statements = parse(text, path)
        origin = Origin(path, text)
        names, said, trains = [], [], []
        for stmt in statements:
            if isinstance(stmt, TrainDecl):
                trains.append(stmt)
                continue
            said.extend(self.env.declare(stmt, origin))
            kind = {Def: "def", ParamDecl: "param", NetDecl: "net", DataDecl: "data",
                    LayerDecl: "layer", ConstDecl: "constant"}[type(stmt)]
            names.append(f"{kind} {stmt.name}")
        # its parameters start as the file's init_params(0): as eval, train and its module do
        start = {t: [0.0] * tensor.node.size for t, tensor in alone.params.items()}
        for value, (t, i) in zip(self.env.init(alone, 0), alone.param_order):
            start[t][i] = value
        self.env.set_params(start)
        self.out(f"loaded {path}: " + (", ".join(names) or "nothing"))
        for item in said:
            self.out(item)
        for decl in trains:
            data = ", ".join(name for name, _ in decl.data)
            self.out(f"(its 'train {decl.func}({data})' statement runs when typed)")

    def _code(self, name: str) -> None:
        program = self.env.program_view()
        if name not in program.functions:
            raise ExprgradNameError(f"no def '{name}'" if name else ":code needs a def's name",
                                    hint="defs: " + (", ".join(program.functions) or "none"))
        only = replace(program, functions={name: program.functions[name]})
        blocks = generate(only).split("\n\n\n")  # the def's functions, not the helpers
        helpers = set(HELPERS) | set(PARAM_HELPERS)
        self.out("\n\n\n".join(b for b in blocks if b.startswith("def ") and
                                b[4:].split("(", 1)[0] not in helpers).rstrip())

    def _sympy(self, root: Node) -> None:
        import sympy

        env = self.env
        leaves: dict[int, list[Any]] = {}
        variables = []
        for node in reachable([root]):
            if node.op != "input":
                continue
            kind = env.leaf_kind.get(node.id)
            if kind in ("variable", "param"):
                symbols = element_symbols(env.label(node) or f"v{node.id}", node.shape)
                leaves[node.id] = symbols
                if kind == "variable":
                    variables.extend(symbols)
            else:
                leaves[node.id] = [sympy.Float(v) for v in env.values[node.id]]
        budget = Budget(BUDGET)
        elems: list[Any] | None = within(budget, lambda: to_sympy([root], leaves)[0])
        if elems is None:
            raise ExprgradValueError(f"sympy did not finish within the budget ({BUDGET:g} s)")
        if len(elems) != 1:
            self.out(str(elems))
            return
        e = elems[0]
        self.out(str(e))
        for s in variables:
            d = within(budget, functools.partial(_derivative, e, s))
            self.out(f"  d/d{s} = {d}" if d is not None else
                     f"  d/d{s}: not simplified within the budget ({BUDGET:g} s)")

    def _check(self, name: str) -> None:
        program = self.env.program_view()
        if name not in program.functions:
            raise ExprgradNameError(f"no def '{name}'" if name else ":check needs a def's name",
                                    hint="defs: " + (", ".join(program.functions) or "none"))
        only = replace(program, functions={name: program.functions[name]})
        module = module_of(only, [only.functions[name]], ("value", "grad"),
                           hint=CHECK_HINT)
        budget = Budget(BUDGET)
        lines = check_rules(only, name, budget) + check_function(only, module, name,
                                                                 budget=budget).lines
        for item in lines:
            self.out(item.text())
        if any(item.status == "mismatch" for item in lines):
            raise ExprgradValueError(f"'{name}' has a wrong derivative")

    def _graph(self, root: Node, output: str) -> None:
        env = self.env
        if root.op == "const":
            raise ExprgradValueError(
                "this value was computed from numbers alone: it is a constant, with no history "
                "to draw", hint="bind the numbers to names first (e.g. 'x1 = 2.0') and draw an "
                "expression of the names")
        drawn = reachable([root])
        if len(drawn) > MAX_DRAW_NODES:
            raise ExprgradValueError(f"this value was computed in {len(drawn)} steps; pictures "
                                     f"are limited to {MAX_DRAW_NODES}",
                                     hint="draw a part of it (a named intermediate)")
        grads_of: dict[int, Node] = {}
        if root.shape == ():  # (the body of a call with grad rules has no gradient to show)
            on_path = {n.id for n in reachable([root], diff_args)}
            everything = [n for n in drawn if n.op != "const" and n.id in on_path]
            grads_of = dict(zip((n.id for n in everything), env.cotangents(root, everything)))

        def label_of(node: Node) -> str:
            return env.label(node) or (f"{float(node.attr):g}" if node.op == "const" else "")

        lines = dot_lines(drawn, {n.id for n in drawn}, env.values, grads_of, label_of,
                          {n.id: env.graph.groups.get(n.id) for n in drawn})
        render("digraph exprgrad {\n" + "\n".join(lines) + "\n}\n", output)
        self.out(f"wrote {output}")

    def _train(self, decl: TrainDecl, origin: Origin) -> None:
        env = self.env
        data = {name: env.value(env.bindings[name]) for name, _ in decl.data
                if name in env.bindings and name not in env.program.data}
        view = env.program_view(data=data, train=decl)
        with located(origin):
            config = config_from_program(view)
            quiet = config.steps <= 20
            progress = Progress(config.steps, sys.stderr, enabled=not quiet)
            result = train(view, config=config, init=env.flat_params(), progress=progress,
                           interruptible=True)
        if quiet:
            for k, loss in enumerate(result.losses, 1):
                self.out(f"step {k}: loss {loss:.10g}")
        if result.stopped:
            self.err(f"stopped: {result.stopped}")
        env.set_flat_params(result.params)
        tensors = list(dict.fromkeys(t for t, _ in env.program.param_order))
        first = f"{result.losses[0]:.6g} -> " if result.losses else ""
        last = f"{result.losses[-1]:.6g}" if result.losses else "-"
        self.out(f"trained {config.loss} for {result.steps} step(s) ({config.optimizer}, lr "
                 f"{config.lr:g}): loss {first}{last}; updated {len(env.program.param_order)} "
                 f"parameter element(s) of {_owners(env, tensors)}")

    # ---- completion ----------------------------------------------------------------------
    def names(self) -> set[str]:
        """Every name a user may type now (completion: nothing is compiled)."""
        program = self.env.program
        return (set(BUILTINS) | set(COMMANDS) | (set(LANGUAGE_WORDS) - {"dout"})
                | set(self.env.bindings)
                | set(program.functions) | set(program.nets) | set(program.params)
                | set(program.data) | set(self.env.lowerer.constants))


def _visible(text: str) -> str:
    return "".join(ch if ch.isprintable() or ch in "\n\t" else "?" for ch in text)


def _looks_like_path(word: str) -> bool:
    """A file name after an expression: it has a suffix (``.svg``; no expression ends in a dot
    and letters) or starts like a path (``/``, ``./``, ``../``, ``~``)."""
    return bool(re.search(r"\.[A-Za-z]\w*$", word)) or word.startswith(("/", "./", "../", "~"))


def _derivative(e: Any, s: Any) -> Any:
    import sympy

    return sympy.simplify(sympy.diff(e, s))


def _owners(env: Environment, tensors: list[str]) -> str:
    """Tensor names, those of a network said once as 'net NAME'."""
    owner = {t: f"net {name}" for name, net in env.program.nets.items()
             for t in net.tensor_names}
    return ", ".join(dict.fromkeys(owner.get(t, t) for t in tensors))


class _Quit(Exception):
    pass


def _show(value: Any) -> str:
    return format_value(value)


# ---------------------------------------------------------------------------------------------


def _is_block_start(line: str) -> bool:
    """A line that opens an indented block: a def, a layer type or a for loop."""
    s = line.split("#", 1)[0].strip()
    return s.split(" ", 1)[0] in ("def", "layer", "for") and s.endswith(":")


def inputs(lines: Iterable[str], first: int = 1) -> Iterator[tuple[str, int]]:
    """Complete inputs from lines (numbered from ``first``): one line each, or a block (a def,
    a layer type, a for loop) up to an empty line or the next unindented line; ``(text, number
    of its first line)``."""
    pending: list[str] = []
    start = 0
    for lineno, raw in enumerate(lines, first):
        line = raw if raw.endswith("\n") else raw + "\n"
        if pending:
            if line.strip() and line[:1] in " \t":
                pending.append(line)
                continue
            yield "".join(pending), start
            pending = []
            if not line.strip():
                continue
        if _is_block_start(line):
            pending, start = [line], lineno
            continue
        yield line, lineno
    if pending:
        yield "".join(pending), start


def run_script(session: Session, stream: Any) -> int:
    """Inputs from a non-terminal stream, without prompts; 1 if any failed."""
    try:
        for text, lineno in inputs(stream):
            session.line = lineno
            session.feed(text, lineno)
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
            for name in sorted(session.names()):
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
            start = lineno + 1
            lineno += text.count("\n") + 1
            if _is_block_start(text):
                lines = [text + "\n"]
                while True:
                    more = prompt.prompt("... ")
                    lineno += more.count("\n") + 1
                    if not more.strip():
                        break
                    lines.append(more + "\n")
                text = "".join(lines)
            # a paste of several lines holds several inputs: each runs as if typed
            for one, first in inputs(text.splitlines(keepends=True), start):
                session.feed(one, first)
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        except _Quit:
            break
    return 0


def repl_main(path: str | None = None) -> int:
    session = Session(command=shlex.join(["exprgrad", "repl", *([path] if path else [])]))
    if path:  # a mistake in the file is reported; the session starts anyway (python -i)
        session.feed(f":load {path}", 0)
    if sys.stdin.isatty() and sys.stdout.isatty():
        return run_terminal(session)
    # undecodable bytes become U+FFFD, which the parser reports like any bad character
    stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    return run_script(session, stream)
