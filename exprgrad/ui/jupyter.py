"""Jupyter support: the ``%%exprgrad`` cell magic (``%load_ext exprgrad``) and rich displays.

Contract: ``%%exprgrad [NAME]`` compiles the cell's ``.exg`` text (scalar backend) and puts in
the notebook's namespace (``shell.user_ns``):

- ``NAME`` (default ``exg``): a :class:`CompiledCell`: ``.module`` (the generated module),
  ``.code``, ``.program``, ``.params`` (initial parameters), ``.params_by_name(params)``,
  ``.train(...)``; other attributes are the module's;
- each generated function of each ``def`` under the module's own Python name (``ENTRY_POINTS``):
  ``f``, ``f_grad``, ``f_grad_sum``, ``f_vjp`` ... (a def named like a Python builtin gets the
  changed name the module gives it), each a :class:`CompiledFunction` that shows its code;
- ``params``: the initial parameter list (``init_params(seed)``, the seed of the cell's
  ``train`` statement, else 0);
- ``train``: ``NAME.train``: trains as the cell's ``train`` statement says, keyword arguments
  overriding its settings (``init=`` starts from given parameters); returns a ``TrainResult``.

A later cell's names replace an earlier one's. A mistake in the cell is shown as exprgrad's caret
display (no Python traceback); a bug in exprgrad propagates with its traceback. Nothing here
imports IPython: the magic is registered through the shell object IPython passes in.
"""

from __future__ import annotations

import builtins
import html
import inspect
import keyword
import shlex
import types
from collections.abc import Callable, Sequence
from typing import Any

from ..emit.load import module_from_code
from ..emit.module import safe_label
from ..emit.scalar import generate
from ..errors import ExprgradError, ExprgradValueError, is_bug
from ..ir.program import Program
from ..lower.lowering import compile_program
from ..run.config import TrainResult, config_from_program, settings_of
from ..run.progress import Progress
from ..run.training import module_steps
from ..run.training import train as run_training

#: the name a cell's compiled program takes when ``%%exprgrad`` names none
DEFAULT_NAME = "exg"

#: a function's displayed code is cut after this many lines (the whole module: ``NAME.code``)
SHOWN_LINES = 300


class ExprgradCellError(Exception):
    """A mistake in a ``%%exprgrad`` cell; IPython shows :meth:`_render_traceback_` (the caret
    display) instead of a traceback."""

    def __init__(self, error: ExprgradError | str) -> None:
        self.error = error
        self.text = error.render() if isinstance(error, ExprgradError) else error
        super().__init__(self.text)

    def _render_traceback_(self) -> list[str]:
        return self.text.splitlines()


def _fenced(code: str) -> str:
    """Markdown for a Python code block (the fence longer than any run of backticks in it)."""
    longest = run = 0
    for ch in code:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}python\n{code.rstrip()}\n{fence}"


class CompiledFunction:
    """A generated function, callable as itself, that shows its generated code in Jupyter."""

    def __init__(self, func: Callable[..., Any], def_name: str, kind: str, cell: str) -> None:
        self.__wrapped__ = func
        self.__name__ = func.__name__
        self.__doc__ = func.__doc__
        self.def_name = def_name
        self.kind = kind
        self.cell = cell

    def __call__(self, *args: Any) -> Any:
        return self.__wrapped__(*args)

    @property
    def code(self) -> str:
        """The generated Python source of this function."""
        return inspect.getsource(self.__wrapped__)

    def __repr__(self) -> str:
        return (f"<exprgrad {self.kind} function {self.__name__} of def {self.def_name} "
                f"(%%exprgrad {self.cell})>")

    def _repr_markdown_(self) -> str:
        lines = self.code.splitlines()
        shown = "\n".join(lines[:SHOWN_LINES])
        more = (f"\n\n... {len(lines) - SHOWN_LINES} more lines (`{self.cell}.code` has the "
                f"whole module)" if len(lines) > SHOWN_LINES else "")
        return (f"`{self.__name__}`: the {self.kind} function of `def {self.def_name}` "
                f"(`%%exprgrad {self.cell}`)\n\n{_fenced(shown)}{more}")


class CompiledCell:
    """A ``%%exprgrad`` cell compiled: its program, generated module and helpers."""

    def __init__(self, name: str, program: Program, code: str, module: types.ModuleType
                 ) -> None:
        self.name = name
        self.program = program
        self.code = code
        self.module = module
        self.seed = config_from_program(program).seed if program.train is not None else 0
        self.params: list[float] = list(module.init_params(self.seed))
        self.functions: dict[str, CompiledFunction] = {
            pyname: CompiledFunction(getattr(module, pyname), def_name, kind, name)
            for def_name, kinds in module.ENTRY_POINTS.items()
            for kind, pyname in kinds.items()}

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self.module, attr)

    def params_by_name(self, params: Sequence[float] | None = None) -> dict[str, Any]:
        """The parameters (default: the initial ones) as {tensor name: values}."""
        values = list(self.params if params is None else params)
        if not hasattr(self.module, "params_by_name"):
            if values:
                raise ValueError(f"expected 0 parameters, got {len(values)}")
            return {}
        return self.module.params_by_name(values)  # type: ignore[no-any-return]

    def train(self, init: Sequence[float] | None = None, **settings: Any) -> TrainResult:
        """Train as the cell's ``train`` statement says; keyword arguments override its
        settings (steps, lr, optimizer, seed, batch_size, reduce, backend); ``init`` gives the
        starting parameters (default: ``init_params(seed)``)."""
        try:
            config = settings_of(self.program, settings)
        except ExprgradError as err:  # located in the cell, with its caret
            raise err.with_source(self.program.filename, self.program.source) from None
        if init is not None and len(init) != len(self.program.param_order):
            raise ExprgradValueError(f"init must hold {len(self.program.param_order)} "
                                     f"parameters, got {len(init)}")
        return run_training(self.program, config=config, init=init, module=self.module,
                            progress=Progress.automatic(config.steps), interruptible=True)

    def names(self) -> list[str]:
        """The names the cell put in the namespace."""
        return [self.name, *self.functions, "params", "train"]

    def __repr__(self) -> str:
        return (f"<exprgrad cell {self.name}: defs {', '.join(self.module.ENTRY_POINTS) or 'none'}"
                f", {len(self.params)} parameters>")

    def _repr_html_(self) -> str:
        defs = ", ".join(f"<code>{html.escape(n)}</code>" for n in self.functions) or "none"
        return (f"<div><b>%%exprgrad {html.escape(self.name)}</b>: functions {defs}; "
                f"{len(self.params)} parameters</div>\n<details><summary>generated code "
                f"({len(self.code.splitlines())} lines)</summary><pre>{html.escape(self.code)}"
                f"</pre></details>")


def compile_cell(name: str, text: str) -> CompiledCell:
    """Compile a cell's text as the file ``NAME.exg``; raises ExprgradError for a mistake."""
    filename = f"{name}.exg"
    program = compile_program(text, filename)
    steps, unroll, data = module_steps(program)
    code = generate(program, steps=steps, unroll=unroll, data=data)
    module = module_from_code(code, name, f"<exprgrad:{safe_label(filename)}.py>")
    return CompiledCell(name, program, code, module)


def _cell_name(line: str) -> str:
    try:
        words = shlex.split(line)
    except ValueError as err:
        raise ExprgradCellError(f"%%exprgrad: {err}") from None
    if not words:
        return DEFAULT_NAME
    if len(words) > 1 or not words[0].isidentifier() or keyword.iskeyword(words[0]):
        raise ExprgradCellError(
            f"%%exprgrad: {line.strip()!r} is not a name\n"
            "hint: the cell magic's line is '%%exprgrad' or '%%exprgrad NAME' (a Python name)")
    if words[0] in RESERVED or words[0].startswith("_"):
        raise ExprgradCellError(
            f"%%exprgrad: {words[0]!r} is a name Python or IPython uses itself\n"
            "hint: choose another name for the cell, e.g. '%%exprgrad model'")
    return words[0]


#: names a cell never binds in the notebook: Python's builtins and IPython's own names
RESERVED = frozenset(dir(builtins)) | {"In", "Out", "get_ipython", "exit", "quit", "display"}


def exprgrad_magic(shell: Any, line: str, cell: str) -> None:
    """``%%exprgrad [NAME]``: see the module docstring."""
    name = _cell_name(line)
    try:
        compiled = compile_cell(name, cell)
    except ExprgradError as err:
        if is_bug(err):
            raise
        raise ExprgradCellError(err) from None
    shell.user_ns[name] = compiled
    kept = {f: fn for f, fn in compiled.functions.items() if f not in RESERVED}
    shell.user_ns.update(kept)
    if len(kept) < len(compiled.functions):  # still reachable as NAME.f
        print(f"exprgrad: not bound (names IPython uses): "
              f"{', '.join(f for f in compiled.functions if f not in kept)}; use {name}.NAME")
    shell.user_ns["params"] = list(compiled.params)
    shell.user_ns["train"] = compiled.train
    print(f"exprgrad: defined {', '.join(compiled.names())}")


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%%exprgrad`` with the IPython shell ``ipython``."""
    if not hasattr(ipython, "register_magic_function"):
        raise RuntimeError("exprgrad's Jupyter support runs inside IPython: in a notebook or "
                           "IPython, '%load_ext exprgrad' (pip install 'exprgrad[jupyter]')")

    def magic(line: str, cell: str) -> None:
        exprgrad_magic(ipython, line, cell)

    magic.__doc__ = __doc__
    ipython.register_magic_function(magic, magic_kind="cell", magic_name="exprgrad")
