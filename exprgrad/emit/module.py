"""The one module writer both backends use: names, imports, helpers, header and constants.

Contract:
- :class:`Uses` is handed to every op emitter. An emitter names a module (``{math}``), a runtime
  helper (``{_div}``) or prints a number through it, and it records that use; the module then
  imports exactly what its code uses (a module cannot use ``math`` without importing it).
- :class:`ModuleWriter` owns the module's :class:`~exprgrad.emit.names.Namer`. It gives every user
  function its Python names (``f``, ``f_grad``, ``f_grad_sum``, ``f_hess``; the user's name is
  kept where it is free, see :meth:`ModuleWriter.entry`), collects the functions' text and
  :meth:`ModuleWriter.render` prints the module: header, imports, constants (``ENTRY_POINTS``
  maps each user function and kind to its Python name), helpers, ``init_params``, functions.
- The text is deterministic; numbers are printed here with ``repr``; file names are reduced to
  harmless characters by :func:`safe_label`.
"""

from __future__ import annotations

import hashlib
import math
import random
import string
from collections.abc import Mapping, Sequence
from typing import Any

from ..ir.ops import HELPERS
from ..ir.program import ENTRY_KINDS
from ..version import __version__
from .names import Namer

#: the module constants every generated module defines (``DTYPE``: numpy modules only)
CONSTANTS = ("EXPRGRAD_VERSION", "BACKEND", "DTYPE", "SOURCE", "SOURCE_SHA256", "FUNCTIONS",
             "ENTRY_POINTS", "UNROLLED", "PARAM_COUNT", "PARAM_TENSORS", "PARAM_INIT")

#: the functions every module defines to describe, initialise, read and write its parameters
#: from the per-tensor tables PARAM_TENSORS and PARAM_INIT (checked against this text by
#: exprgrad.emit.verify, like the op helpers; :func:`param_helpers` runs the same text in
#: exprgrad itself). ``params_by_name`` and ``params_from_names`` only with parameters.
PARAM_HELPERS = {
    "_param_positions": '''def _param_positions(shape, offset, strides):
    """(flat position, index) of each element of a tensor, in row-major order."""
    if len(shape) == 0:
        return [(offset, ())]
    if len(shape) == 1:
        return [(offset + i * strides[0], (i,)) for i in range(shape[0])]
    return [(offset + i * strides[0] + j * strides[1], (i, j))
            for i in range(shape[0]) for j in range(shape[1])]''',
    "param_names": '''def param_names():
    """Each element of the flat parameter list by name, in order (PARAM_TENSORS gives each
    tensor's shape, offset and strides in the flat list, and its elements' name pattern)."""
    names = [""] * PARAM_COUNT
    for shape, offset, strides, pattern in PARAM_TENSORS.values():
        for i, index in _param_positions(shape, offset, strides):
            names[i] = pattern.format(*index)
    return names''',
    "__getattr__": '''def __getattr__(name):
    """PARAM_NAMES, the tuple of param_names(), is computed when first read."""
    if name == "PARAM_NAMES":
        names = globals()["PARAM_NAMES"] = tuple(param_names())
        return names
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")''',
    "init_params": '''def init_params(seed=0):
    """Initial parameter values, in param_names() order; the same seed gives the same values:
    one random.Random(seed) draws PARAM_INIT's runs (count, kind, a, b) in order."""
    rng = random.Random(seed)
    draw = {"uniform": rng.uniform, "normal": rng.gauss}
    values = []
    for count, kind, a, b in PARAM_INIT:
        a, b = float(a), float(b)
        if kind == "const":
            values.extend([a] * count)
        else:
            values.extend([draw[kind](a, b) for _ in range(count)])
    return values''',
    "params_by_name": '''def params_by_name(params):
    """The flat parameters as {tensor name: its values}: a number, a list or a list of rows
    (PARAM_TENSORS gives each tensor's shape and place in the flat list)."""
    if len(params) != PARAM_COUNT:
        raise ValueError(f"expected {PARAM_COUNT} parameters, got {len(params)}")
    out = {}
    for name, (shape, offset, strides, _) in PARAM_TENSORS.items():
        values = [float(params[i]) for i, _ in _param_positions(shape, offset, strides)]
        if len(shape) == 0:
            values = values[0]
        elif len(shape) == 2:
            values = [values[r * shape[1]:(r + 1) * shape[1]] for r in range(shape[0])]
        out[name] = values
    return out''',
    "params_from_names": '''def params_from_names(tensors):
    """The flat parameter list (param_names() order) from {tensor name: values} shaped as
    params_by_name returns them; every tensor must be given, with its shape."""
    unknown = sorted(set(tensors) - set(PARAM_TENSORS))
    if unknown:
        raise KeyError(f"no parameter tensor {unknown[0]!r}")
    flat = [0.0] * PARAM_COUNT
    for name, (shape, offset, strides, _) in PARAM_TENSORS.items():
        values = tensors[name]
        rows = [values] if len(shape) < 2 else values
        if len(shape) == 2 and (isinstance(values, (str, bytes, dict)) or not hasattr(
                values, "__len__") or len(values) != shape[0]):
            raise ValueError(f"{name} needs {shape[0]} rows of {shape[1]} values")
        items = []
        for row in rows:
            if len(shape) == 0:
                ok = not hasattr(row, "__len__")
                row = [row]
            else:
                ok = hasattr(row, "__len__") and not isinstance(row, (str, bytes, dict)) and \\
                    len(row) == shape[-1]
            if not ok:
                wanted = "a number" if len(shape) == 0 else f"{shape[-1]} values"
                if len(shape) == 2:
                    wanted = f"{shape[0]} rows of {shape[1]} values"
                raise ValueError(f"{name} needs {wanted}")
            items.extend(row)
        for (i, _), v in zip(_param_positions(shape, offset, strides), items):
            if hasattr(v, "__len__"):
                raise ValueError(f"{name} holds numbers, not {type(v).__name__} values")
            flat[i] = float(v)
    return flat''',
}

#: the parameter helpers a module without parameters leaves out
_ONLY_WITH_PARAMS = ("params_by_name", "params_from_names")


def param_tables(program: Any) -> dict[str, Any]:
    """The values of a program's ``PARAM_COUNT``, ``PARAM_TENSORS`` (tensor name -> (shape,
    offset, strides, element name pattern)) and ``PARAM_INIT`` (runs of (count, kind, a, b) in
    flat order; a non-finite number as the string float() reads): per tensor and per run, never
    per element, so a module's size does not grow with its weights."""
    layout = program.param_layout()
    tensors = {t: (tuple(pt.node.shape), *layout[t], pt.name_format)
               for t, pt in program.params.items()}
    runs = tuple((count, kind, _number(a), _number(b))
                 for count, kind, a, b in program.init_runs())
    return {"PARAM_COUNT": len(program.param_order), "PARAM_TENSORS": tensors,
            "PARAM_INIT": runs}


def _number(x: float) -> float | str:
    return x if math.isfinite(x) else repr(x)


def param_helpers(program: Any) -> dict[str, Any]:
    """The parameter helpers (``init_params``, ``param_names``, ...) of a program's generated
    modules, run in exprgrad itself: the same text over the same tables, so what they return is
    what a generated module's functions return (bit for bit), without generating a module."""
    namespace: dict[str, Any] = {"random": random, **param_tables(program)}
    exec(compile(_HELPER_TEXT, "<exprgrad:parameter helpers>", "exec"), namespace)  # noqa: S102
    return namespace


_HELPER_TEXT = "\n\n".join(PARAM_HELPERS.values()) + "\n"


def initial_params(program: Any, seed: int = 0) -> list[float]:
    """``init_params(seed)`` of the program's generated modules (see :func:`param_helpers`)."""
    return param_helpers(program)["init_params"](seed)  # type: ignore[no-any-return]


#: how a module is imported, by the name generated code uses for it
_IMPORTS = {"math": "import math", "random": "import random", "np": "import numpy as np"}


def safe_label(text: str) -> str:
    """A file name reduced to characters that are harmless in a comment and a string literal."""
    name = text.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in name)
    return cleaned[:100] or "_"


class Uses(Mapping[str, str]):
    """What the emitted code uses; also the field mapping of emitter templates (``{math}``)."""

    def __init__(self, float_module: str) -> None:
        self.float_module = float_module  # where inf and nan come from: "math" or "np"
        self.imports: set[str] = set()
        self.helpers: set[str] = set()

    def __getitem__(self, key: str) -> str:
        if key in HELPERS:
            self.helpers.add(key)
            if "math." in HELPERS[key]:  # helpers need math and builtins only (tested)
                self.imports.add("math")
            return key
        if key in _IMPORTS:
            self.imports.add(key)
            return key
        raise KeyError(f"an emitter template names {key!r}, which is neither a module nor a "
                       "helper")

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0

    def const(self, value: float) -> str:
        """A float as Python reads it back exactly (inf and nan through the float module)."""
        if math.isnan(value):
            return f"{self[self.float_module]}.nan"
        if math.isinf(value):
            inf = f"{self[self.float_module]}.inf"
            return inf if value > 0 else f"(-{inf})"
        text = repr(float(value))
        return f"({text})" if text.startswith("-") else text

    def format(self, template: str, args: Sequence[str]) -> str:
        """``template`` with ``{0}``... the argument texts and ``{math}``, ``{_div}``... names."""
        return _FORMATTER.vformat(template, tuple(args), self)


_FORMATTER = string.Formatter()


class Unrecorded(Uses):
    """Names every module and helper as itself and records nothing: for reading what an
    emitter writes (the allowlist's derivation, fusion's argument counts)."""

    def __init__(self) -> None:
        super().__init__("math")

    def __getitem__(self, key: str) -> str:
        return key


class ModuleWriter:
    """Collects the functions of one generated module and prints it (see module docstring)."""

    def __init__(self, program: Any, backend: str, float_module: str,
                 dtype: str | None = None, twins: bool = False) -> None:
        self.program = program
        self.backend = backend
        self.dtype = dtype  # the numpy float type's name, printed as DTYPE (numpy modules)
        self.namer = Namer(frozenset(HELPERS))
        self.uses = Uses(float_module)
        self.entries: dict[str, dict[str, str]] = {}
        #: the batch size of each user function's unrolled training steps, if it has them
        self.unrolled: dict[str, int] = {}
        self.chunks: list[str] = []
        # every possible function's name is given out before any function is written, so no
        # local of any function can take it; the user's own names first, so that a suffixed
        # name never takes one a user chose
        self._names: dict[str, dict[str, str]] = {f: {} for f in program.functions}
        for fname in program.functions:
            if self.namer.free(fname):
                self._names[fname]["value"] = self.namer.public(fname)
        for fname in program.functions:
            if "value" not in self._names[fname]:
                self._names[fname]["value"] = self.namer.public(fname)
        for fname in program.functions:
            for kind, suffix in ENTRY_KINDS.items():
                if kind != "value":
                    self._names[fname][kind] = self.namer.public(fname.rstrip("_") + suffix)
        #: with ``twins`` (numpy modules), the private name of each function's array-API twin
        self._twins: dict[str, dict[str, str]] = {f: {} for f in program.functions}
        for fname in program.functions if twins else ():
            for kind, name in self._names[fname].items():
                self._twins[fname][kind] = self.namer.public(f"_{name}_xp")

    def entry(self, fname: str, kind: str) -> str:
        """The Python name of the generated function of ``kind`` for the user's ``fname``
        (recorded in ``ENTRY_POINTS`` once asked for: the module defines it)."""
        name = self._names[fname][kind]
        self.entries.setdefault(fname, {})[kind] = name
        return name

    def twin(self, fname: str, kind: str) -> str | None:
        """The private name of the array-API twin of the function of ``kind`` for ``fname``
        (numpy modules written with twins; else None)."""
        return self._twins[fname].get(kind)

    def add(self, text: str) -> None:
        self.chunks.append(text)

    def render(self, docstring: str) -> str:
        program = self.program
        self.uses["random"]  # init_params draws from random.Random
        label = safe_label(program.filename)
        digest = hashlib.sha256(program.source.encode("utf-8")).hexdigest()
        out = [
            f"# Generated by exprgrad {__version__} from {label}; do not edit.",
            f"# exprgrad-source-sha256: {digest}",
            f'"""{docstring.format(label=label)}"""',
            "",
        ]
        out.extend(_IMPORTS[m] for m in sorted(self.uses.imports))
        out.append("")
        out.append(f"EXPRGRAD_VERSION = {__version__!r}")
        out.append(f"BACKEND = {self.backend!r}")
        if self.dtype is not None:
            out.append(f"DTYPE = {self.dtype!r}")
        out.append(f"SOURCE = {label!r}")
        out.append(f"SOURCE_SHA256 = {digest!r}")
        funcs = ", ".join(f"{n!r}: {tuple(f.arg_names)!r}" for n, f in program.functions.items())
        out.append(f"FUNCTIONS = {{{funcs}}}")
        out.append("ENTRY_POINTS = {" + "".join(
            f"\n    {f!r}: {{{', '.join(f'{k!r}: {v!r}' for k, v in kinds.items())}}},"
            for f, kinds in self.entries.items()) + ("\n" if self.entries else "") + "}")
        out.append("UNROLLED = {" + ", ".join(f"{f!r}: {n!r}" for f, n in self.unrolled.items())
                   + "}")
        tables = param_tables(program)
        out.append(f"PARAM_COUNT = {tables['PARAM_COUNT']!r}")
        out.append("PARAM_TENSORS = {" + "".join(
            f"\n    {t!r}: {entry!r}," for t, entry in tables["PARAM_TENSORS"].items())
                   + ("\n" if program.params else "") + "}")
        out.append("PARAM_INIT = (" + "".join(f"\n    {run!r}," for run in tables["PARAM_INIT"])
                   + ("\n" if program.params else "") + ")")
        out.append("")
        if self.uses.helpers:
            out.append("")
            for name in sorted(self.uses.helpers):
                out.append(HELPERS[name])
        for k, (name, helper) in enumerate(PARAM_HELPERS.items()):
            if program.params or name not in _ONLY_WITH_PARAMS:
                out.extend(["", helper] if k == 0 else ["", "", helper])
        for chunk in self.chunks:
            out.append("")
            out.append("")
            out.append(chunk)
        return "\n".join(out).rstrip("\n") + "\n"
