"""One symbol table per generated module: every identifier the emitters write comes from here.

Contract:
- A :class:`Namer` holds the module-level names. It starts with every name the module must not
  rebind: Python's keywords and builtins, the modules generated code imports (``math``,
  ``random``, ``np``), the module constants and the runtime helpers. :meth:`Namer.public` gives a
  user's function a Python name: the user's own name where it is free, else that name with a
  numbered suffix; a name once given is never given again.
- A :class:`Scope` holds one generated function's locals. It never gives out a module-level
  name, nor a name it gave before. :meth:`Scope.fresh` turns a wanted name (a user's argument,
  ``_w_0`` for a parameter element) into a unique one; :meth:`Scope.temp` numbers temporaries.
- So the map from user names to Python names is injective, and no user name can land on a
  keyword, a builtin, a module, a helper or a name the emitter uses itself: a collision is
  impossible by construction, not caught by a check. No name ever contains ``__``.
"""

from __future__ import annotations

import builtins
import itertools
import keyword
import re

#: module-level names the generated modules define or import themselves
MODULE_NAMES = frozenset({"math", "random", "np", "numpy", "init_params", "PARAM_NAMES",
                          "FUNCTIONS", "ENTRY_POINTS", "SOURCE", "SOURCE_SHA256",
                          "EXPRGRAD_VERSION", "BACKEND", "DTYPE", "UNROLLED", "PARAM_TENSORS",
                          "params_by_name", "params_from_names", "PARAM_COUNT", "PARAM_INIT",
                          "param_names", "_param_positions"})

_PYTHON_NAMES = frozenset(dir(builtins)) | frozenset(keyword.kwlist) | frozenset(
    keyword.softkwlist)


_SEVERAL_UNDERSCORES = re.compile(r"_{2,}")

#: the longest local name given (a parameter element of networks nested in networks, named
#: ``_top_inner_..._w_0_1``, is cut there; the suffixes keep names apart)
MAX_LOCAL_NAME = 60


def ident_part(text: str) -> str:
    """A user name (possibly dotted, like ``n.layers.0.w``) as an identifier fragment; a name
    longer than 40 characters keeps its first 12 and last 27 (where a nested network's tensor
    names differ), so locals stay short whatever the names."""
    if len(text) > 40:
        text = f"{text[:12]}_{text[-27:]}"
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def _suffixed(base: str, k: int) -> str:
    """``base`` with the k-th suffix (k >= 2), never forming ``__``."""
    return f"{base}{k}" if base.endswith("_") else f"{base}_{k}"


class Namer:
    """The module-level symbol table (see the module docstring)."""

    def __init__(self, helpers: frozenset[str] | set[str] = frozenset()) -> None:
        self.taken: set[str] = set(_PYTHON_NAMES | MODULE_NAMES | set(helpers))
        self.counter = itertools.count(1)  # temporaries numbered across the module

    def public(self, wanted: str) -> str:
        """A module-level name for a user's function: ``wanted`` if free, else suffixed."""
        return self._take(wanted, self.taken)

    def free(self, name: str) -> bool:
        return name not in self.taken

    def scope(self, module_wide_numbers: bool = False) -> Scope:
        return Scope(self, self.counter if module_wide_numbers else itertools.count(1))

    @staticmethod
    def _take(wanted: str, *tables: set[str]) -> str:
        wanted = _SEVERAL_UNDERSCORES.sub("_", wanted)  # `_fa_` + `_0` reads `_fa_0`, never `__`
        assert wanted.isidentifier() and "__" not in wanted, f"bad name {wanted!r}"
        name, k = wanted, 1
        while any(name in t for t in tables):
            k += 1
            name = _suffixed(wanted, k)
        tables[-1].add(name)
        return name


class Scope:
    """One generated function's locals (see the module docstring)."""

    def __init__(self, namer: Namer, counter: itertools.count[int]) -> None:
        self.namer = namer
        self.taken: set[str] = set()
        self._counter = counter

    def fresh(self, wanted: str) -> str:
        """A local named ``wanted`` (its first ``MAX_LOCAL_NAME`` characters) if that is free
        here and at module level, else suffixed."""
        return Namer._take(wanted[:MAX_LOCAL_NAME], self.namer.taken, self.taken)

    def temp(self, hint: str = "t") -> str:
        """A numbered temporary, ``_t7`` (or ``_<hint>7``)."""
        base = "_" + _SEVERAL_UNDERSCORES.sub("_", ident_part(hint).strip("_"))
        while True:
            name = f"{base}{next(self._counter)}"
            if name not in self.taken and name not in self.namer.taken:
                self.taken.add(name)
                return name
