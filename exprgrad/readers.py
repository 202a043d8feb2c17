"""The one reader of numbers from outside: CSV files, JSON files and command-line values.

Contract (every rule below raises :class:`ExprgradValueError`, exit 2, naming the file, the row
and the column where there is one, and never another exception):
- Only regular files are read (a device, FIFO or directory is refused before it is opened, so
  nothing blocks), of at most :data:`MAX_INPUT_BYTES`, as UTF-8 (a byte-order mark is dropped).
- A number is written as Python and JSON agree on it: digits with an optional sign, point and
  exponent, or ``nan``/``inf``/``-inf`` (no ``1_0``, no hexadecimal); it must fit a float.
- :func:`read_csv` returns rows of numbers with their line numbers. Empty rows are skipped. The
  first row is a header only when none of its fields is a number; a first row mixing numbers and
  text, and any later row with text, is an error.
- :func:`read_json` returns the parsed value: duplicate keys, nesting deeper than
  :data:`MAX_JSON_DEPTH`, and numbers that do not fit a float are errors.
- :func:`parse_value` reads a command-line value: a number, or a JSON list of numbers nested at
  most two deep (a matrix), of at most :data:`MAX_VALUE_CHARS` characters.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from .errors import ExprgradValueError, Span

#: the largest CSV or JSON file read, in bytes (a 64 MiB CSV takes about 20 s and 0.8 GB)
MAX_INPUT_BYTES = 64 * 1024 * 1024
#: the deepest nesting of lists and objects in a JSON file
MAX_JSON_DEPTH = 20
#: the longest command-line value, in characters
MAX_VALUE_CHARS = 1_000_000
#: the most numbers read from one CSV file (each costs about 100 bytes of memory)
MAX_INPUT_NUMBERS = 5_000_000

_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                     r"|[+-]?(?:nan|inf|infinity)", re.IGNORECASE | re.ASCII)


def number(text: str) -> float | None:
    """The float ``text`` writes (see the module docstring), or None if it is not a number."""
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    if math.isinf(value) and "inf" not in text.lower():
        return None  # 1e999: too large for a float
    return value


def read_text(path: str | Path, what: str) -> str:
    """A regular file's text (see the module docstring)."""
    shown = str(path)
    if "\x00" in shown:
        raise ExprgradValueError(f"cannot read {shown!r}: a file name cannot contain a NUL "
                                 "character", filename=shown)
    try:
        info = os.stat(path)
    except OSError as err:
        raise ExprgradValueError(f"cannot read {shown!r}: {err.strerror or err}",
                                 filename=shown) from None
    if not stat.S_ISREG(info.st_mode):
        raise ExprgradValueError(f"cannot read {shown!r}: it is not a regular file",
                                 filename=shown, hint=f"name a {what}")
    if info.st_size > MAX_INPUT_BYTES:
        raise ExprgradValueError(f"{shown!r} has {info.st_size} bytes; a {what} may have "
                                 f"{MAX_INPUT_BYTES} (exprgrad.readers.MAX_INPUT_BYTES)",
                                 filename=shown)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ExprgradValueError(f"cannot read {shown!r}: {err.strerror or err}",
                                 filename=shown) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        start = err.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data[:start].count(b"\n") + 1
        col = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise ExprgradValueError(f"not UTF-8 text (byte {start} is 0x{data[start]:02x})",
                                 Span(line, col, line, col + 1),
                                 filename=shown, hint=f"save the {what} as UTF-8") from None


def read_csv(path: str | Path) -> list[tuple[int, list[float]]]:
    """(line number, numbers) for each data row of a CSV file."""
    text = read_text(path, "CSV file")
    shown = str(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    lines = text.splitlines()
    rows: list[tuple[int, list[float]]] = []
    first = True
    count = 0
    try:
        for fields in reader:
            line = reader.line_num
            if not any(f.strip() for f in fields):
                continue
            if any(";" in f or "\t" in f for f in fields) and any(
                    c.isdigit() for f in fields for c in f):
                raise ExprgradValueError(
                    f"line {line}: fields separated by ';' or tabs", _field_span(lines, line, 1),
                    filename=shown, source=text, hint="exprgrad reads comma-separated files")
            values = [number(f) for f in fields]
            if first and all(v is None for v in values):
                first = False
                continue  # a header
            first = False
            for col, (field, value) in enumerate(zip(fields, values), 1):
                if value is None:
                    why = ("does not fit a float" if _NUMBER.fullmatch(field.strip()) else
                           "is not a number")
                    raise ExprgradValueError(
                        f"line {line}, field {col}: {_short(field)!r} {why}",
                        _field_span(lines, line, col), filename=shown, source=text,
                        hint="a header is allowed on the first row only, and only of names")
            rows.append((line, [v for v in values if v is not None]))
            count += len(values)
            if count > MAX_INPUT_NUMBERS:
                raise ExprgradValueError(f"more than {MAX_INPUT_NUMBERS} numbers "
                                         "(exprgrad.readers.MAX_INPUT_NUMBERS)", filename=shown)
    except csv.Error as err:
        raise ExprgradValueError(f"line {reader.line_num}: {err}", filename=shown) from None
    return rows


def csv_block(data: bytes, shown: str, first_line: int, fields: int) -> list[list[float]]:
    """The rows of a block of a CSV file (whole lines, no header: chunked training reads a file
    in such blocks), by the rules of :func:`read_csv`: every row has ``fields`` numbers, empty
    rows are skipped, and a mistake is reported with the file's own line number (the block's
    first line is ``first_line``) and a caret under the field."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first_line + data[:err.start].count(b"\n")
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ExprgradValueError(f"not UTF-8 text (byte 0x{data[err.start]:02x})",
                                 Span(line, col, line, col + 1), filename=shown,
                                 hint="save the CSV file as UTF-8") from None
    lines = text.splitlines()
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[list[float]] = []

    def located(rest: str, at: int, col: int, hint: str | None = None) -> ExprgradValueError:
        span = _field_span(lines, at, col)
        line = first_line + at - 1  # the file's line number; the shown text is the block's
        return ExprgradValueError(f"line {line}{rest}", Span(line, span.col, line, span.end_col),
                                  filename=shown, source="\n" * (line - 1) + (
                                      lines[at - 1] if at <= len(lines) else ""),
                                  hint=hint)

    try:
        for row in reader:
            at = reader.line_num
            if not any(f.strip() for f in row):
                continue
            if len(row) == 1 and any(c in row[0] for c in ";\t"):
                raise located(": fields separated by ';' or tabs", at, 1,
                              "exprgrad reads comma-separated files")
            if len(row) != fields:
                raise located(f" has {len(row)} fields; the file's rows have {fields}", at,
                              fields + 1 if len(row) > fields else len(row) + 1)
            values = [number(f) for f in row]
            for col, (field, value) in enumerate(zip(row, values), 1):
                if value is None:
                    why = ("does not fit a float" if _NUMBER.fullmatch(field.strip()) else
                           "is not a number")
                    raise located(f", field {col}: {_short(field)!r} {why}", at, col,
                                  "a header is allowed on the first row only, and only of "
                                  "names")
            rows.append([v for v in values if v is not None])  # (checked above: no None)
    except csv.Error as err:
        line = first_line + reader.line_num - 1
        raise ExprgradValueError(f"line {line}: {err}", filename=shown) from None
    return rows


def csv_header(path: str | Path) -> list[str] | None:
    """The names in a CSV file's header row (its first non-empty row when none of its fields
    is a number, as :func:`read_csv` decides), or None when it has none."""
    text = read_text(path, "CSV file")
    for fields in csv.reader(io.StringIO(text, newline="")):
        if any(f.strip() for f in fields):
            return [f.strip() for f in fields] if all(number(f) is None for f in fields) else None
    return None


def _field_span(lines: list[str], line: int, col: int) -> Span:
    """Where field ``col`` of a line starts and ends (column 1 when quoting makes it unclear)."""
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    if '"' in text:
        return Span(line, 1, line, 2)
    parts = text.split(",")
    start = sum(len(p) + 1 for p in parts[:col - 1]) + 1
    width = len(parts[col - 1]) if col <= len(parts) else 1
    return Span(line, start, line, start + max(1, width))


def read_json(path: str | Path) -> Any:
    """A JSON file's value (see the module docstring)."""
    text = read_text(path, "JSON file")
    shown = str(path)
    too_deep = ExprgradValueError(f"lists or objects nested more than {MAX_JSON_DEPTH} deep "
                                  "(exprgrad.readers.MAX_JSON_DEPTH)", filename=shown)
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_int=_json_number,
                           parse_float=_json_number)
    except RecursionError:  # the parser met thousands of levels
        raise too_deep from None
    except json.JSONDecodeError as err:
        raise ExprgradValueError(f"not JSON: {err.msg}", Span(err.lineno, err.colno, err.lineno,
                                                              err.colno + 1),
                                 filename=shown, source=text) from None
    except ValueError as err:  # from the hooks
        raise ExprgradValueError(str(err), filename=shown) from None
    stack = [(value, 0)]
    while stack:  # the depth, iteratively
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise too_deep
        if isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
    return value


def parse_value(name: str, text: str) -> float | list[Any]:
    """A command-line value: a number or a list of numbers (nested at most twice)."""
    if len(text) > MAX_VALUE_CHARS:
        raise ExprgradValueError(f"the value of '{name}' has {len(text)} characters; at most "
                                 f"{MAX_VALUE_CHARS} (exprgrad.readers.MAX_VALUE_CHARS)")
    plain = number(text)
    if plain is not None:
        return plain
    if _NUMBER.fullmatch(text.strip()):
        raise ExprgradValueError(f"{name}={_short(text)} does not fit a float (at most about "
                                 "1.8e308)")
    depth = 0
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if depth > 2:
            raise ExprgradValueError(f"{name}={_short(text)} nests lists more than twice",
                                     hint="a value is a number, a vector [1, 2] or a matrix "
                                     "[[1, 2], [3, 4]]")
    try:  # (nan, inf and -inf inside lists too, as the module docstring says numbers are)
        value = json.loads(_SPECIAL.sub(_json_special, text), parse_int=_json_number,
                           parse_float=_json_number, parse_constant=_json_number)
    except ValueError as err:
        if "does not fit a float" in str(err):
            raise ExprgradValueError(f"{name}=...: {err}") from None
        value = None
    if not isinstance(value, list) or not _numbers_only(value):
        raise ExprgradValueError(f"{name}={_short(text)} is not a number or a list of numbers",
                                 hint="e.g. x=1.5, x=[1, 2, 3] or m=[[1, 2], [3, 4]]")
    return value


#: nan, inf, infinity (any case, signed) standing alone in a command-line list
_SPECIAL = re.compile(r"(?<![\w.])([+-]?)(nan|infinity|inf)(?![\w.])", re.IGNORECASE | re.ASCII)


def _json_special(match: re.Match[str]) -> str:
    """JSON's spelling of a special float (which parse_constant reads)."""
    if match[2].lower() == "nan":
        return "NaN"
    return "-Infinity" if match[1] == "-" else "Infinity"


def _numbers_only(value: Any) -> bool:
    if isinstance(value, list):
        return all(_numbers_only(v) for v in value)  # at most two levels deep (checked)
    return isinstance(value, float)


def _json_number(text: str) -> float:
    value = number(text)
    if value is None:
        raise ValueError(f"the number {_short(text)} does not fit a float")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {_short(key)!r} appears twice")
        out[key] = value
    return out


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."
