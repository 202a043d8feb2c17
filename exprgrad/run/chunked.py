"""Chunked training: data sets larger than memory, read block by block through Dask.

Contract:

- :func:`open_source` plans a data source: a glob of CSV files (``'part-*.csv'``), of Parquet
  files (``'*.parquet'``), one such file, or a directory of them. Files are taken in natural
  order of their names (``part-2`` before ``part-10``), and each is cut into blocks: byte
  ranges of at most ``blocksize`` of a CSV file, ending at line ends; a Parquet file's row
  groups. Only headers and Parquet metadata are read here. Columns fill the loss's arguments in
  order (``loss(x[3], y)``: three columns for ``x``, one for ``y``), all the file's columns by
  default, or those ``cols`` picks (``"0:3,7"``, or header names ``"a,b,c,label"``).
- :class:`ChunkedData` reads every block once to count and check it (a bad cell is an
  :class:`~exprgrad.errors.ExprgradValueError` naming ``file:line:col``, before any training),
  then serves what training needs: the summed loss and gradient over all examples (each
  block's share computed by the generated numpy module's ``f_grad``, the shares added up in a
  tree of ``dask.delayed`` tasks), the summed loss alone, and the rows of given example
  numbers.
  Computations run on Dask's local threaded scheduler, or on a ``dask.distributed`` cluster
  (:func:`connect`). Nothing but Dask schedules work.
- :func:`train_chunked` trains as :func:`exprgrad.run.training.train` does on the same
  examples in memory, with the same numbers: a full batch (``batch_size`` 0, or at least the
  number of examples) is one Dask computation a step and the optimizer's update
  (:class:`~exprgrad.run.optimizer.Optimizer`) on the summed gradient; minibatches follow the
  in-memory order exactly (each step, ``random.Random(seed)`` shuffles the example numbers
  ``0..n-1`` as in memory and cuts them into batches of ``batch_size``), their examples
  gathered ``window`` at a time in one Dask computation, and each batch goes through the
  numpy module's fused step, as in memory.
"""

from __future__ import annotations

import array
import contextlib
import glob
import hashlib
import io
import math
import os
import random
import re
import stat
import threading
import time
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..emit.arrays import generate_numpy
from ..emit.load import entry_point, module_from_code
from ..emit.module import initial_params
from ..emit.steps import STEP_KINDS
from ..errors import ExprgradValueError, Span
from ..ir.program import Function, Program
from ..readers import csv_block, number
from .config import TrainConfig, TrainResult
from .optimizer import Optimizer
from .progress import Progress
from .training import FusedStep, trainable_loss

#: the largest block of a CSV file read at once, in bytes (``--blocksize``)
BLOCKSIZE = 32 * 1024 * 1024
#: the most examples gathered at once for minibatches (one Dask computation, one pass over
#: the blocks, per this many examples of an epoch)
WINDOW = 262_144
#: seconds to wait for a Dask scheduler (``--scheduler-timeout``)
CONNECT_TIMEOUT = 10.0

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")

_INSTALL_HINT = ("pip install 'exprgrad[dask]' (dask[array,dataframe], distributed and "
                 "pyarrow)")


def need(module: str, what: str = "chunked training") -> None:
    """Import ``module`` or say clearly that it is missing (exit 2)."""
    try:
        __import__(module)
    except ImportError as err:
        raise ExprgradValueError(f"{what} needs {module.split('.')[0]}, which is not "
                                 f"installed ({err})", hint=_INSTALL_HINT) from None


def wants_chunked(data: str | None, chunked: bool = False, scheduler: str | None = None) -> bool:
    """Whether ``--data`` asks for chunked training: a glob pattern, a Parquet file, a
    directory, or ``--chunked`` / ``--scheduler`` given."""
    if data is None:
        return False
    return (chunked or scheduler is not None or glob.has_magic(data) or os.path.isdir(data)
            or data.lower().endswith(PARQUET_SUFFIXES))


# ---- planning: files, blocks, columns --------------------------------------------------------

@dataclass(frozen=True)
class Block:
    """A part of one file read as a unit: a CSV file's bytes ``start:end`` (whole lines, after
    the header), or a Parquet file's row group ``start``."""

    path: str
    kind: str  # "csv" or "parquet"
    start: int
    end: int
    fields: int  # the file's columns
    usecols: tuple[int, ...]  # the columns read, in the order they fill the arguments
    names: tuple[str, ...] = ()  # Parquet: the columns' names, by position
    first_row: int = 0  # Parquet: the row number (0-based) of the group's first row


@dataclass
class Source:
    """A planned data source (see :func:`open_source`)."""

    pattern: str
    kind: str
    files: list[str]
    names: list[str] | None  # the columns' names (a CSV header, a Parquet schema)
    fields: int
    columns: list[int]
    blocks: list[Block]


def _natural(path: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def _kind(path: str) -> str:
    low = path.lower()
    if low.endswith(CSV_SUFFIXES):
        return "csv"
    if low.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise ExprgradValueError(f"{path!r} is neither a .csv nor a .parquet file", filename=path,
                             hint="chunked training reads CSV files (.csv) or Parquet files "
                             "(.parquet, .pq)")


def find_files(pattern: str) -> tuple[str, list[str]]:
    """The kind (``"csv"`` or ``"parquet"``) and the files of a pattern, in natural order."""
    if "\x00" in pattern:
        raise ExprgradValueError(f"{pattern!r}: a file name cannot contain a NUL character")
    if os.path.isdir(pattern):
        files = [os.path.join(pattern, name) for name in os.listdir(pattern)
                 if name.lower().endswith(CSV_SUFFIXES + PARQUET_SUFFIXES)]
        if not files:
            raise ExprgradValueError(f"the directory {pattern!r} holds no .csv or .parquet "
                                     "file", filename=pattern)
    elif glob.has_magic(pattern):
        files = glob.glob(pattern)
        if not files:
            raise ExprgradValueError(f"no file matches {pattern!r}", hint="check the folder "
                                     "and the pattern (quote it, so that exprgrad expands it "
                                     "rather than the shell)")
    else:
        files = [pattern]
    for path in files:
        try:
            info = os.stat(path)
        except OSError as err:
            raise ExprgradValueError(f"cannot read {path!r}: {err.strerror or err}",
                                     filename=path) from None
        if not stat.S_ISREG(info.st_mode):
            raise ExprgradValueError(f"cannot read {path!r}: it is not a regular file",
                                     filename=path)
    files.sort(key=_natural)
    kinds = {_kind(f) for f in files}
    if len(kinds) > 1:
        raise ExprgradValueError(f"{pattern!r} matches both CSV and Parquet files",
                                 hint="train on one kind at a time")
    return kinds.pop(), files


def _csv_head(path: str) -> tuple[list[str] | None, int | None, int]:
    """``(header names or None, fields per row or None for no data, data start offset)``."""
    with _reading(path), open(path, "rb") as f:
        offset = 3 if f.read(3) == b"\xef\xbb\xbf" else 0
        f.seek(offset)
        line_no = 0
        while True:
            start = f.tell()
            raw = f.readline()
            line_no += 1
            if not raw:
                return None, None, start
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ExprgradValueError(f"not UTF-8 text (byte 0x{raw[err.start]:02x})",
                                         Span(line_no, err.start + 1, line_no, err.start + 2),
                                         filename=path, hint="save the CSV file as UTF-8"
                                         ) from None
            fields = next(_csv_reader(text), [])
            if any(f.strip() for f in fields):
                end = f.tell()
                break
    values = [number(f) for f in fields]
    if all(v is None for v in values):
        if len(fields) == 1 and any(c in fields[0] for c in ";\t") and any(
                c.isdigit() for c in fields[0]):
            raise ExprgradValueError(f"line {line_no}: fields separated by ';' or tabs",
                                     Span(line_no, 1, line_no, 2), filename=path,
                                     source="\n" * (line_no - 1) + text,
                                     hint="exprgrad reads comma-separated files")
        return [f.strip() for f in fields], len(fields), end
    return None, len(fields), start  # the first row is data: csv_block checks it


def _csv_reader(text: str) -> Iterator[list[str]]:
    import csv

    return csv.reader(io.StringIO(text, newline=""), strict=True)


@contextlib.contextmanager
def _reading(path: str) -> Iterator[None]:
    """An ``OSError`` while reading ``path`` as the one-line error of an unreadable file."""
    try:
        yield
    except OSError as err:
        raise ExprgradValueError(f"cannot read {path!r}: {err.strerror or err}",
                                 filename=path) from None


def _csv_blocks(path: str, start: int, blocksize: int) -> list[tuple[int, int]]:
    """Byte ranges of at most about ``blocksize`` from ``start`` to the end, each ending at a
    line end."""
    with _reading(path), open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        bounds = [start]
        while bounds[-1] + blocksize < size:
            f.seek(bounds[-1] + blocksize - 1)
            f.readline()  # to the end of the line the cut falls in
            bounds.append(f.tell())
        if bounds[-1] < size:
            bounds.append(size)
    return list(zip(bounds, bounds[1:]))


def _arrow_numeric(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


def _describe(fn: Function) -> str:
    return ", ".join(name + (f"[{', '.join(map(str, shape))}]" if shape else "")
                     for name, shape in zip(fn.arg_names, fn.arg_shapes))


def needed_columns(fn: Function) -> int:
    """The number of columns the loss's arguments take, one per element."""
    return sum(math.prod(shape) for shape in fn.arg_shapes)


def select_columns(spec: str | None, names: Sequence[str] | None, fields: int, fn: Function,
                   where: str) -> list[int]:
    """The columns (0-based, in order) that fill ``fn``'s arguments: all ``fields`` of
    ``where`` without ``spec``; else ``spec``'s comma-separated items, each a 0-based index,
    a range ``a:b`` (``b`` excluded, either end may be left out) or a name in ``names``."""
    needed = needed_columns(fn)
    hint = (f"'{fn.name}' takes {_describe(fn)}: one column per element, filled in order; pick "
            "them with --cols (0-based indices, ranges a:b, or header names, e.g. --cols 0:3,7)")
    if spec is None:
        if fields != needed:
            raise ExprgradValueError(f"{where} has {fields} columns; '{fn.name}' needs "
                                     f"{needed}", filename=where, hint=hint)
        return list(range(fields))
    cols: list[int] = []
    for item in (part.strip() for part in spec.split(",")):
        if re.fullmatch(r"[0-9]+", item):
            picked = [int(item)]
        elif re.fullmatch(r"[0-9]*:[0-9]*", item):
            lo, hi = item.split(":")
            picked = list(range(int(lo or 0), int(hi) if hi else fields))
            if not picked:
                raise ExprgradValueError(f"--cols: the range {item!r} is empty", hint=hint)
        elif names is not None and item in names:
            if list(names).count(item) > 1:
                raise ExprgradValueError(f"--cols: {where} has several columns named {item!r}",
                                         hint="name them by index")
            picked = [list(names).index(item)]
        else:
            known = (f"its columns: {', '.join(names)}" if names else
                     "it has no header row: name columns by 0-based index")
            raise ExprgradValueError(f"--cols: {where} has no column {item!r}", hint=known)
        for col in picked:
            if col >= fields:
                raise ExprgradValueError(f"--cols: column {col} is beyond the {fields} "
                                         f"columns of {where} (indices start at 0)")
        cols.extend(picked)
    if len(cols) != needed:
        raise ExprgradValueError(f"--cols picks {len(cols)} columns; '{fn.name}' needs "
                                 f"{needed}", hint=hint)
    return cols


def open_source(pattern: str, fn: Function, cols: str | None = None,
                blocksize: int = BLOCKSIZE) -> Source:
    """Plan ``pattern``'s files into blocks (see the module docstring)."""
    if blocksize < 1:
        raise ExprgradValueError("--blocksize must be at least 1 byte")
    kind, files = find_files(pattern)
    names: list[str] | None = None
    named_by: str | None = None
    fields: int | None = None
    first: str | None = None
    plans: list[tuple[str, Any]] = []
    for path in files:
        if kind == "csv":
            header, width, start = _csv_head(path)
            plan: Any = (start, width)
        else:
            need("pyarrow", "reading Parquet files")
            header, width, plan = _parquet_head(path)
        if header is not None:
            if names is not None and header != names:
                raise ExprgradValueError(f"{path!r}: its columns ({_short_list(header)}) differ "
                                         f"from those of {named_by!r} ({_short_list(names)})",
                                         filename=path, hint="every file of a data set has "
                                         "the same columns, in the same order")
            names, named_by = header, path
        if width is not None:
            if fields is not None and width != fields:
                raise ExprgradValueError(f"{path!r} has {width} columns; {first!r} has "
                                         f"{fields}", filename=path, hint="every file of a "
                                         "data set has the same columns")
            fields, first = width, first or path
        plans.append((path, plan))
    if fields is None:
        raise ExprgradValueError(f"there are no training examples in {pattern!r}")
    assert first is not None
    columns = select_columns(cols, names, fields, fn, first)
    blocks: list[Block] = []
    for path, plan in plans:
        if kind == "csv":
            start, _ = plan
            blocks.extend(Block(path, "csv", a, b, fields, tuple(columns))
                          for a, b in _csv_blocks(path, start, blocksize))
        else:
            row = 0
            for group, rows in enumerate(plan):
                blocks.append(Block(path, "parquet", group, group + 1, fields, tuple(columns),
                                    tuple(names or ()), row))
                row += rows
    return Source(pattern, kind, files, names, fields, columns, blocks)


def _short_list(names: Sequence[str]) -> str:
    text = ", ".join(names)
    return text if len(text) <= 60 else text[:57] + "..."


def _parquet_head(path: str) -> tuple[list[str], int, list[int]]:
    """``(column names, number of columns, rows of each row group)``; every column of a
    Parquet file must hold numbers (integers or floats)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with _reading(path):
            meta = pq.ParquetFile(path)
    except (pa.ArrowException, ValueError) as err:
        raise ExprgradValueError(f"{path!r} is not a Parquet file that can be read: "
                                 f"{str(err)[:200]}", filename=path) from None
    schema = meta.schema_arrow
    names = list(schema.names)
    for column in schema:
        if not _arrow_numeric(column.type):
            raise ExprgradValueError(f"{path!r}: column {column.name!r} holds {column.type}, "
                                     "not numbers", filename=path,
                                     hint="every column of a Parquet file trained on holds "
                                     "integers or floats")
    if len(set(names)) != len(names):
        raise ExprgradValueError(f"{path!r}: two columns have the same name", filename=path)
    groups = [meta.metadata.row_group(i).num_rows for i in range(meta.num_row_groups)]
    return names, len(names), groups


# ---- reading blocks (on the scheduler's threads or workers) ------------------------------------

#: the bytes a CSV block may hold to be read by pandas' C parser; any other (letters of nan and
#: inf, quotes, underscores, tabs, non-ASCII) sends the block to exprgrad's strict reader
_PLAIN = b"0123456789eE+-., \r\n"


def read_block(block: Block) -> Any:
    """The block's chosen columns as a float64 array, one row per example (see
    :func:`exprgrad.readers.csv_block` for what a CSV block may hold)."""
    import numpy as np

    if block.kind == "parquet":
        return _read_parquet(block)
    with _reading(block.path), open(block.path, "rb") as f:
        f.seek(block.start)
        data = f.read(block.end - block.start)
    table = fast_csv(data, block.fields)
    if table is None:  # exprgrad's strict reader: the same numbers, or the error's line
        first = 1 + _newlines_before(block.path, block.start)
        rows = csv_block(data, block.path, first, block.fields)
        table = np.array(rows, dtype=np.float64).reshape(len(rows), block.fields)
    return np.ascontiguousarray(table[:, list(block.usecols)])


def fast_csv(data: bytes, fields: int) -> Any:
    """The block parsed by pandas, when it holds only plain numbers in rows of ``fields``;
    else None. Python's ``float`` and pandas' parser agree on every number tested
    (tests/test_chunked.py compares them on random fields)."""
    import numpy as np

    if data.translate(None, _PLAIN):
        return None
    if not data.strip():
        return np.empty((0, fields))
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(data), header=None, dtype=np.float64, na_filter=False,
                            engine="c")
    except (ValueError, pd.errors.ParserError):
        return None
    table = frame.to_numpy(dtype=np.float64)
    if table.shape[1] != fields or not np.isfinite(table).all():
        return None  # (a plain number that overflowed, 1e999: the strict reader refuses it)
    return table


def _newlines_before(path: str, offset: int) -> int:
    count = 0
    with _reading(path), open(path, "rb") as f:
        while offset > 0:
            piece = f.read(min(offset, 1 << 20))
            if not piece:
                break
            count += piece.count(b"\n")
            offset -= len(piece)
    return count


def _read_parquet(block: Block) -> Any:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    names = [block.names[c] for c in block.usecols]
    try:
        with _reading(block.path):
            table = pq.ParquetFile(block.path).read_row_group(block.start, columns=names)
    except (pa.ArrowException, ValueError) as err:
        raise ExprgradValueError(f"{block.path!r}: row group {block.start} cannot be read: "
                                 f"{str(err)[:200]}", filename=block.path) from None
    out = np.empty((table.num_rows, len(names)))
    for j, name in enumerate(names):
        column = table.column(name)
        if column.null_count:
            row = block.first_row + int(np.argmax(pc.is_null(column).to_numpy(
                zero_copy_only=False)))
            raise ExprgradValueError(f"{block.path!r}: row {row + 1}: column {name!r} is "
                                     "empty (null)", filename=block.path,
                                     hint="every cell trained on holds a number")
        out[:, j] = column.to_numpy()
    return out


def check_block(block: Block, dtype: str) -> int:
    """Read a block (so that any mistake in it is found) and return its number of rows; a
    finite value that ``dtype`` cannot hold is an error, as in memory."""
    import numpy as np

    table = read_block(block)
    if dtype != "float64":
        with np.errstate(over="ignore"):
            narrow = table.astype(dtype)
        bad = np.isfinite(table) & ~np.isfinite(narrow)
        if bad.any():
            where = (f"row group {block.start}" if block.kind == "parquet" else
                     f"bytes {block.start}-{block.end}")
            raise ExprgradValueError(f"{block.path!r} ({where}): a value "
                                     f"({table[bad][0]:g}) does not fit {dtype}",
                                     filename=block.path,
                                     hint="train with dtype=float64, or scale the data")
    return int(table.shape[0])


# ---- generated code on every worker -----------------------------------------------------------

_MODULES: dict[str, types.ModuleType] = {}
_MODULES_LOCK = threading.Lock()


def _module(code: str) -> types.ModuleType:
    """The module of generated ``code``, made once per process (a worker gets the text, which
    the driver generated and verified)."""
    key = hashlib.sha256(code.encode()).hexdigest()
    with _MODULES_LOCK:
        module = _MODULES.get(key)
        if module is None:
            module = _MODULES[key] = module_from_code(code, "exg_numpy_chunked",
                                                      f"<exprgrad:chunked:{key[:12]}>")
    return module


def arguments(table: Any, layout: Sequence[tuple[int, tuple[int, ...]]], dtype: str
              ) -> list[Any]:
    """The loss's arguments from a block's columns: one array per argument, the examples
    along the first axis (as in-memory training builds them)."""
    import numpy as np

    out = []
    for start, shape in layout:
        size = math.prod(shape)
        part = table[:, start] if shape == () else table[:, start:start + size].reshape(
            table.shape[0], *shape)
        out.append(np.ascontiguousarray(part, dtype=dtype))
    return out


def block_grad(table: Any, code: str, name: str, layout: Any, params: Any, dtype: str
               ) -> Any:
    """``[summed loss, summed gradient...]`` of one block (float64)."""
    import numpy as np

    out = np.zeros(1 + len(params))
    if table.shape[0]:
        f = entry_point(_module(code), name, "grad")
        with np.errstate(all="ignore"):
            values, grad = f(params, *arguments(table, layout, dtype))
            out[0] = np.sum(values, dtype=np.float64)
            out[1:] = grad
    return out


def block_loss(table: Any, code: str, name: str, layout: Any, params: Any, dtype: str
               ) -> float:
    """The summed loss of one block."""
    import numpy as np

    if not table.shape[0]:
        return 0.0
    f = entry_point(_module(code), name, "value")
    with np.errstate(all="ignore"):
        values = np.asarray(f(params, *arguments(table, layout, dtype)), dtype=np.float64)
    return _fsum(values.tolist())


def _fsum(values: Sequence[float]) -> float:
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):  # inf - inf, or beyond the largest float
        return float(sum(values))


#: how many blocks' shares one task of the reduction adds up
FAN_IN = 8


def _add(*shares: Any) -> Any:
    total = shares[0].copy()
    for share in shares[1:]:
        total += share
    return total


def _take(table: Any, rows: Any) -> Any:
    return table[rows]


# ---- the data set ---------------------------------------------------------------------------

@contextlib.contextmanager
def connect(address: str | None, timeout: float = CONNECT_TIMEOUT) -> Iterator[Any]:
    """A ``dask.distributed`` client of the scheduler at ``address`` (None: no client, Dask's
    local threaded scheduler), closed afterwards."""
    if address is None:
        yield None
        return
    need("distributed", "--scheduler")
    import logging

    from distributed import Client

    if not timeout > 0:
        raise ExprgradValueError("--scheduler-timeout must be a positive number of seconds")
    if not re.fullmatch(r"(?:(?:tcp|tls)://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):[0-9]{1,5}",
                        address):
        raise ExprgradValueError(f"--scheduler {address!r} is not the address of a Dask "
                                 "scheduler", hint="give it as tcp://HOST:PORT (a scheduler "
                                 "listens on port 8786 by default)")
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # its own log lines would repeat the error below
    # in a thread of its own, waited for at most the timeout (plus a margin): a server that is
    # not Dask's can keep the handshake waiting for ever (an HTTP port), or answer with bytes
    # the handshake reads as a vast message length (an SSH banner: MemoryError)
    outcome: list[Any] = []

    def attempt() -> None:
        try:
            outcome.append(Client(address, timeout=timeout, set_as_default=False))
        except Exception as err:  # (reported below, as not reaching a scheduler)
            outcome.append(err)

    worker = threading.Thread(target=attempt, daemon=True)
    try:
        worker.start()
        worker.join(timeout + 5)
    finally:
        quiet.setLevel(level)
    client = outcome[0] if outcome else TimeoutError(f"no answer within {timeout:g} s")
    if isinstance(client, BaseException):
        raise ExprgradValueError(
            f"cannot reach a Dask scheduler at {address!r}: {str(client)[:300] or type(client)}",
            hint="start one with 'dask scheduler' and workers with 'dask worker ADDRESS' (on "
            "machines that can read the data files), give its address as tcp://HOST:PORT (not "
            "the dashboard's port), or leave out --scheduler to use local threads")
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=5)


class ChunkedData:
    """A planned source, counted and checked (see the module docstring)."""

    def __init__(self, source: Source, fn: Function, client: Any = None,
                 dtype: str = "float64") -> None:
        need("dask")
        need("pandas")
        import dask
        import numpy as np

        self.source, self.fn, self.client, self.dtype = source, fn, client, dtype
        layout, pos = [], 0
        for shape in fn.arg_shapes:
            layout.append((pos, tuple(shape)))
            pos += math.prod(shape)
        self.layout = tuple(layout)
        self.width = pos
        read = [dask.delayed(read_block, pure=True)(b) for b in source.blocks]
        lengths = self.compute([dask.delayed(check_block, pure=True)(b, dtype)
                                for b in source.blocks])
        keep = [i for i, rows in enumerate(lengths) if rows]  # (a file of a header only)
        self.blocks = [source.blocks[i] for i in keep]
        self.tables = [read[i] for i in keep]
        self.lengths = [lengths[i] for i in keep]
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)])
        self.n = int(self.offsets[-1])
        if not self.n:
            raise ExprgradValueError(f"there are no training examples in {source.pattern!r}")

    def compute(self, tasks: list[Any]) -> list[Any]:
        """Dask computes ``tasks``, on the cluster or on local threads."""
        import dask

        try:
            if self.client is not None:
                return list(self.client.compute(tasks, sync=True))
            return list(dask.compute(*tasks, scheduler="threads"))
        except ModuleNotFoundError as err:  # a worker without exprgrad
            if (err.name or "").split(".")[0] != "exprgrad":
                raise
            raise ExprgradValueError("the Dask workers cannot import exprgrad",
                                     hint="install exprgrad (the same version) on every "
                                     "worker") from None

    def totals(self, code: str, name: str, params: Any) -> tuple[float, Any]:
        """``(summed loss, summed gradient)`` over every example: each block's by the module's
        ``f_grad``, then added up in a tree of ``FAN_IN`` shares a task (a fixed order: the
        same sums on threads and on a cluster)."""
        import dask
        import numpy as np

        code_t, params_t = dask.delayed(code), dask.delayed(np.asarray(params))
        level = [dask.delayed(block_grad, pure=True)(t, code_t, name, self.layout, params_t,
                                                     self.dtype) for t in self.tables]
        while len(level) > 1:
            level = [dask.delayed(_add, pure=True)(*level[i:i + FAN_IN])
                     for i in range(0, len(level), FAN_IN)]
        (total,) = self.compute(level)
        return float(total[0]), total[1:]

    def loss(self, code: str, name: str, params: Any) -> float:
        """The summed loss over every example (each block's exactly rounded)."""
        import dask
        import numpy as np

        code_t, params_t = dask.delayed(code), dask.delayed(np.asarray(params))
        return _fsum(self.compute([dask.delayed(block_loss, pure=True)(
            t, code_t, name, self.layout, params_t, self.dtype) for t in self.tables]))

    def rows(self, index: Any) -> Any:
        """The examples numbered ``index`` (an int64 array, any order): their columns, in
        that order; one Dask computation reads each block holding some of them once."""
        import dask
        import numpy as np

        block_of = np.searchsorted(self.offsets, index, side="right") - 1
        order = np.argsort(block_of, kind="stable")
        cuts = np.searchsorted(block_of[order], np.arange(len(self.tables) + 1))
        wanted, tasks = [], []
        for b in range(len(self.tables)):
            where = order[cuts[b]:cuts[b + 1]]
            if len(where):
                wanted.append(where)
                tasks.append(dask.delayed(_take, pure=True)(self.tables[b],
                                                            index[where] - self.offsets[b]))
        out = np.empty((len(index), self.width))
        for where, part in zip(wanted, self.compute(tasks)):
            out[where] = part
        return out

    def describe(self) -> dict[str, Any]:
        return {"pattern": self.source.pattern, "format": self.source.kind,
                "files": len(self.source.files), "blocks": len(self.blocks),
                "examples": self.n,
                "scheduler": "threads" if self.client is None else str(
                    self.client.scheduler.address)}


# ---- training ---------------------------------------------------------------------------------

def loss_code(program: Program, fn: Function, config: TrainConfig) -> str:
    """The numpy module's text for the loss: its value, gradient and the optimizer's step."""
    only = replace(program, functions={fn.name: fn})
    return generate_numpy(only, kinds=("value", "grad", STEP_KINDS[config.optimizer]),
                          dtype=config.dtype, steps=(config.optimizer,))


def check_trainable(program: Program, config: TrainConfig) -> Function:
    """The loss to train in chunks, checked (see :func:`exprgrad.run.training.train`)."""
    fn = trainable_loss(program, config)
    if not fn.inputs:
        raise ExprgradValueError(f"'{fn.name}' takes no arguments: there is no data to read "
                                 "in chunks")
    if config.backend == "python":
        raise ExprgradValueError("chunked training runs the numpy backend, not the python one",
                                 hint="leave out --backend python (or backend=python)")
    if config.device != "cpu":  # (each block's gradient is computed by numpy on a worker)
        raise ExprgradValueError(f"chunked training computes on numpy arrays; device "
                                 f"{config.device} is for training in memory",
                                 hint="leave out --device, or train in memory (without "
                                 "--chunked, on a file that fits)")
    return fn


def train_chunked(program: Program, data: ChunkedData, *, config: TrainConfig,
                  init: Sequence[float] | None = None, progress: Progress | None = None,
                  interruptible: bool = False, window: int = WINDOW,
                  code: str | None = None) -> TrainResult:
    """Train on ``data`` with the numbers of in-memory training (see the module docstring)."""
    import numpy as np


    fn = check_trainable(program, config)
    code = code or loss_code(program, fn, config)
    n, batch = data.n, config.batch_size
    whole = batch <= 0 or batch >= n
    rng = random.Random(config.seed)
    params = np.asarray(list(init) if init is not None else initial_params(program, config.seed),
                        dtype=config.dtype)
    if len(params) != len(program.param_order):
        raise ExprgradValueError(f"expected {len(program.param_order)} parameters, got "
                                 f"{len(params)}")
    opt = Optimizer(config, params)
    fused = None if whole else FusedStep(
        _module(code), fn.name, [], 0, config, lambda: np.zeros(len(params), dtype=config.dtype),
        lambda c, idx: c[idx], lambda v: bool(np.isfinite(v).all()))
    span = max(1, window // batch) * batch if not whole else n
    losses: list[float] = []
    stopped = None
    start = time.perf_counter()
    if progress:
        progress.start = start
    start_params, step = params, 0
    try:
        with np.errstate(all="ignore"):
            for step in range(1, config.steps + 1):
                start_params = params
                if whole:
                    value, grads = data.totals(code, fn.name, params)
                    if config.reduce == "mean":
                        value *= 1.0 / n
                        grads = grads * (1.0 / n)
                    if not (math.isfinite(value) and opt.finite(grads)):
                        stopped = (f"step {step}: the loss or its gradient is not finite "
                                   f"(loss = {value}); kept the parameters from before this "
                                   "step")
                        break
                    updated = opt.step(params, grads.astype(config.dtype, copy=False))
                    if not opt.finite(updated):
                        stopped = (f"step {step}: the update made a parameter infinite (loss "
                                   f"= {value}); kept the parameters from before this step")
                        break
                    params = updated
                    losses.append(value)
                else:
                    assert fused is not None
                    params, epoch_loss, count, stopped = _epoch(
                        data, fused, params, rng, n, batch, span, config, step)
                    if stopped:
                        params = start_params
                        break
                    losses.append(epoch_loss / (count if config.reduce == "mean" else 1))
                if progress:
                    progress.update(step, losses[-1])
    except KeyboardInterrupt:
        if not interruptible:
            raise
        done = len(losses)
        if done < step:
            params = start_params
        stopped = (f"interrupted during step {done + 1}: kept the parameters of the {done} "
                   "whole step(s) before it")
    seconds = time.perf_counter() - start
    if progress:
        progress.close()
    return TrainResult(losses, [float(p) for p in params], program.param_names, len(losses),
                       seconds, config, stopped, "numpy", extra={"chunked": data.describe()},
                       dtype=config.dtype)


def _epoch(data: ChunkedData, fused: Any, params: Any, rng: random.Random, n: int, batch: int,
           span: int, config: TrainConfig, step: int) -> tuple[Any, float, int, str | None]:
    """One pass of minibatches in the in-memory order: ``(params, summed batch losses, number
    of batches, why it stopped or None)``."""
    import numpy as np

    order = array.array("q", range(n))
    rng.shuffle(order)  # the same calls, the same permutation, as a list's shuffle in memory
    index = np.frombuffer(order, dtype=np.int64)
    epoch_loss, count = 0.0, 0
    for first in range(0, n, span):
        window = arguments(data.rows(index[first:first + span]), data.layout, config.dtype)
        size = len(window[0])
        for lo in range(0, size, batch):
            columns = [c[lo:lo + batch] for c in window]
            k = len(columns[0])
            value, updated = fused.on(params, columns, k)
            if config.reduce == "mean":
                value *= 1.0 / k
            if not (math.isfinite(value) and fused.finite(updated)):
                return params, epoch_loss, count, (
                    f"step {step}: the loss, its gradient or the update is not finite (loss = "
                    f"{value}); kept the parameters from before this step")
            if not all(map(fused.finite, fused.state)):
                return params, epoch_loss, count, (
                    f"step {step}: the {config.optimizer} state is not finite (a gradient too "
                    "large to square?); kept the parameters from before this step")
            params = updated
            epoch_loss += value
            count += 1
    return params, epoch_loss, count, None


def final_loss(data: ChunkedData, code: str, result: TrainResult) -> float:
    """The loss of the trained parameters over all examples (sum or mean, as trained)."""
    import numpy as np

    total = data.loss(code, result.config.loss, np.asarray(result.params,
                                                            dtype=result.dtype))
    return total / data.n if result.config.reduce == "mean" else total


__all__ = ["BLOCKSIZE", "WINDOW", "Block", "ChunkedData", "Source", "connect", "final_loss",
           "open_source", "train_chunked", "wants_chunked"]
