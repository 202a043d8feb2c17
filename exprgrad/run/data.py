"""Training examples: from the file's data sets or a CSV file, checked against the loss's arguments.

Contract: :func:`examples_from` returns one argument list per example, each value checked
against the loss's argument shapes; a bad row is reported with its file, row and column.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ExprgradError, ExprgradTypeError, ExprgradValueError
from ..ir.program import Function, Program
from ..readers import read_csv
from .config import TrainConfig
from .evaluate import check_value


def examples_from(program: Program, fn: Function, config: TrainConfig,
                  csv_path: str | None = None) -> list[list[Any]]:
    """One argument list per example, checked against the loss's argument shapes."""
    if csv_path is not None:
        examples = [split_row(row, fn, csv_path, line) for line, row in read_csv(csv_path)]
    else:
        if len(config.data) != len(fn.arg_names):
            raise ExprgradTypeError(f"'{fn.name}' takes {len(fn.arg_names)} arguments; 'train' "
                                    f"feeds it {len(config.data)} data sets",
                                    program.train.span if program.train else None)
        sets = [program.data[name] for name in config.data]
        sizes = {len(s) for s in sets} if sets else {1}  # a loss of no arguments: one example
        if len(sizes) != 1:
            raise ExprgradTypeError("the data sets have different numbers of examples: "
                                    + ", ".join(f"{n} has {len(s)}" for n, s in
                                                zip(config.data, sets)),
                                    program.train.span if program.train else None)
        examples = []
        for i in range(sizes.pop()):
            row = []
            for name, shape, dataset in zip(fn.arg_names, fn.arg_shapes, sets):
                try:
                    row.append(check_value(name, dataset[i], shape))
                except ExprgradError as err:
                    raise ExprgradTypeError(f"example {i} does not fit: {err.message}",
                                            program.data_spans.get(config.data[0])) from None
            examples.append(row)
    if not examples:
        raise ExprgradValueError("there are no training examples" + (
            f" in {csv_path!r}" if csv_path is not None else ""), filename=csv_path)
    return examples


def split_row(row: list[float], fn: Function, path: str, number: int) -> list[Any]:
    """CSV columns fill the loss's arguments in order: x[3], y takes columns 0-2 and 3."""
    needed = sum(math.prod(s) for s in fn.arg_shapes)
    if len(row) != needed:
        raise ExprgradValueError(f"line {number} has {len(row)} fields; '{fn.name}' needs "
                                 f"{needed}", filename=path)
    out: list[Any] = []
    pos = 0
    for shape in fn.arg_shapes:
        size = math.prod(shape)
        chunk = row[pos:pos + size]
        pos += size
        if shape == ():
            out.append(chunk[0])
        elif len(shape) == 1:
            out.append(chunk)
        else:
            out.append([chunk[i * shape[1]:(i + 1) * shape[1]] for i in range(shape[0])])
    return out
