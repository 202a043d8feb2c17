"""Import `.exg` files as Python modules, with a compile cache like `.pyc`.

Contract:
- :func:`install` (never done as a side effect of importing exprgrad) puts a finder first on
  ``sys.meta_path``; :func:`uninstall` removes it. ``import model`` then finds ``model.exg`` in
  the directories of ``sys.path`` (or of a package's ``__path__``), in their order.
- Any module the normal import system can find wins: a ``json.exg`` in the working directory never
  hijacks ``import json``. When ``model.py`` (or a package ``model/``) and ``model.exg`` stand in
  the same directory, the import fails with an :class:`ExprgradImportError` naming both.
- The generated source is cached as ``__pycache__/NAME.exg.py`` beside the file, keyed by the
  SHA-256 of the source, the exprgrad version, a hash of the compiler's own source and the
  options (never by modification time), with a hash of the generated text; a stale entry is
  recompiled, and so is an edited one and one that fails the allowlist of
  :mod:`exprgrad.emit.verify` (whatever its hash says); writes go
  to a temporary file and are renamed into place, so concurrent importers cannot corrupt it; an
  unwritable directory still imports, uncached. The cache holds Python source only: nothing is
  unpickled.
- Functions are compiled under the cache file's name (or a name registered in ``linecache``), so
  tracebacks, ``inspect.getsource`` and ``pdb`` show the generated lines, whose comments name the
  ``.exg`` lines. ``importlib.reload`` picks up an edited file. A mistake in the file raises
  :class:`ExprgradImportError` (an ``ImportError``) whose message is the caret display.
- A bug in exprgrad met while importing (any other exception, and an ``UnsafeCodeError``: the
  generated code failed the allowlist; see :func:`exprgrad.errors.is_bug`) is never dressed up
  as a mistake in the file: the exception itself propagates, as any exception raised while
  importing Python code does, with a note under its traceback saying that it is a bug in
  exprgrad (not in the file), the versions and where to report it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import linecache
import os
import stat
import sys
import tempfile
import types
from collections.abc import Sequence
from pathlib import Path

from ..emit.scalar import generate
from ..emit.verify import UnsafeCodeError, verify_module
from ..errors import ExprgradError, ExprgradImportError, is_bug, mark_as_bug
from ..lower.lowering import compile_program, read_source
from ..run.training import module_steps
from ..syntax.parser import grammar_text
from ..version import __version__

#: counters for tests and curious users: how many imports compiled and how many hit the cache
stats = {"compiled": 0, "cache_hits": 0}
_OPTIONS = "backend=python"


def cache_key(source: str) -> str:
    text = f"{__version__}\0{_compiler_fingerprint()}\0{_OPTIONS}\0{source}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.cache
def _compiler_fingerprint() -> str:
    """A hash of the compiler's own source (grammar, syntax, lower, ir, emit): an entry written
    by any other compiler, even of the same version, is stale."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for folder in ("syntax", "lower", "ir", "emit"):
        for path in sorted((package / folder).glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(grammar_text().encode("utf-8"))
    return digest.hexdigest()


def cache_path(exg: Path) -> Path:
    return exg.parent / "__pycache__" / (exg.name + ".py")


#: a cache entry larger than this is not read (it cannot be one exprgrad wrote for the source)
MAX_CACHE_BYTES = 512 * 1024 * 1024


def _usable(path: Path) -> bool:
    """A cache entry may be read or replaced: a regular file (or none), not through a link."""
    try:
        if path.parent.is_symlink():
            return False
        info = os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size <= MAX_CACHE_BYTES


def _read_cache(path: Path, key: str) -> str | None:
    if not _usable(path):
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    first, _, body = text.partition("\n")
    if first != _key_line(key, body):  # another source or compiler, or an edited entry
        return None
    return text


def _key_line(key: str, body: str) -> str:
    """The cache entry's first line: the key and a hash of the generated text after it."""
    return f"# exprgrad-cache-key: {key} {hashlib.sha256(body.encode('utf-8')).hexdigest()}"


def _passes_allowlist(code: str) -> bool:
    """A cache entry runs only if it is code the emitter could have written. (An edited entry no
    longer matches the hash in its key line and is recompiled; this check holds even against an
    edit that recomputed the hash.)"""
    try:
        verify_module(code)
    except (UnsafeCodeError, SyntaxError, ValueError):
        return False
    return True


def _write_cache(path: Path, text: str) -> bool:
    """Write an entry unless something else is there: a file exprgrad did not write as a cache
    entry, anything but a regular file, or a link (the module then imports uncached)."""
    if not _usable(path):
        return False
    if path.exists():
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                if not fh.read(64).startswith("# exprgrad-cache-key: "):
                    return False
        except OSError:
            return False
    try:
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False


def generated_source(exg: Path) -> tuple[str, str]:
    """The generated module text for a file and the file name it should be compiled under."""

    try:
        source = read_source(exg)
        key = cache_key(source)
        cached_at = cache_path(exg)
        cached = _read_cache(cached_at, key)
        if cached is not None and _passes_allowlist(cached):
            stats["cache_hits"] += 1
            return cached, str(cached_at)
        program = compile_program(source, str(exg))
        steps, unroll, data = module_steps(program)
        body = generate(program, steps=steps, unroll=unroll, data=data)
        code = _key_line(key, body) + "\n" + body
    except Exception as err:
        if is_bug(err):  # exprgrad's own fault: propagate it as it is, marked as a bug
            mark_as_bug(err, str(exg))
            raise
        if not isinstance(err, ExprgradError):
            raise
        raise ExprgradImportError(err.render(), err.span, filename=err.filename,
                                  source=err.source, name=exg.stem, path=str(exg)) from None
    stats["compiled"] += 1
    if _write_cache(cached_at, code):
        return code, str(cached_at)
    pseudo = f"<exprgrad:{exg}>"
    linecache.cache[pseudo] = (len(code), None, code.splitlines(keepends=True), pseudo)
    return code, pseudo


class ExgLoader(importlib.abc.Loader):
    def __init__(self, path: Path) -> None:
        self.path = path

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        code, filename = generated_source(self.path)
        if filename.startswith("<"):
            linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True),
                                         filename)
        module.__file__ = str(self.path)
        module.__dict__["__exprgrad_generated__"] = filename
        try:
            exec(compile(code, filename, "exec"), module.__dict__)  # noqa: S102
        except Exception as err:  # generated module text that fails to run is exprgrad's bug
            mark_as_bug(err, str(self.path))
            raise

    def get_source(self, fullname: str) -> str:
        return generated_source(self.path)[0]

    def get_filename(self, fullname: str) -> str:
        return str(self.path)


class ExgFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        leaf = fullname.rpartition(".")[2]
        entries = list(path) if path is not None else list(sys.path)
        for entry in entries:
            directory = Path(entry or ".")
            candidate = directory / f"{leaf}.exg"
            if not candidate.is_file():
                continue
            rivals = [p for p in (directory / f"{leaf}.py", directory / leaf / "__init__.py")
                      if p.exists()]
            if rivals:
                raise ExprgradImportError(
                    f"both {rivals[0]} and {candidate} could answer 'import {fullname}'",
                    hint="rename one of them", name=fullname, path=str(candidate))
            if self._found_elsewhere(fullname, path):
                return None
            return importlib.util.spec_from_file_location(
                fullname, candidate, loader=ExgLoader(candidate.resolve()))
        return None

    def _found_elsewhere(self, fullname: str, path: Sequence[str] | None) -> bool:
        """Whether the normal import system (other finders) can find this module."""
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, ExgFinder):
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            try:
                if find(fullname, path) is not None:
                    return True
            except (ImportError, ValueError):
                continue
        return False


def install() -> None:
    """Make ``import NAME`` find ``NAME.exg`` (idempotent)."""
    if not any(isinstance(f, ExgFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, ExgFinder())
        importlib.invalidate_caches()


def uninstall() -> None:
    """Remove the import hook (modules already imported stay imported)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, ExgFinder)]
