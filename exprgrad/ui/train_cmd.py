"""The `exprgrad train` and `exprgrad predict` commands.

Contract: ``train_cli(args)`` and ``predict_cli(args)`` return the exit code; they read the
program, data and settings, run :func:`exprgrad.run.training.train` or the predictor, and print
or write the results (``--save``, ``--plot``, ``--json``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from ..emit.build import module_of
from ..errors import EXIT_INTERRUPTED, ExprgradError, ExprgradValueError
from ..ir.program import Function, Program
from ..lower.lowering import program_of
from ..readers import csv_header, read_csv
from ..run.chunked import (
    BLOCKSIZE,
    ChunkedData,
    check_trainable,
    connect,
    loss_code,
    need,
    open_source,
    select_columns,
    train_chunked,
    wants_chunked,
)
from ..run.chunked import final_loss as chunked_final_loss
from ..run.config import TrainConfig, TrainResult, config_from_program, validate_config
from ..run.data import examples_from, split_row
from ..run.evaluate import check_value, jsonable
from ..run.files import check_output
from ..run.paramsio import load_params, save_params
from ..run.progress import Progress
from ..run.training import accuracy, final_loss, predictions, predictor, train, values_of
from .plot import PLOT_SUFFIXES, save_loss_curve


def train_cli(args: argparse.Namespace) -> int:
    if args.save and args.plot and Path(args.save).resolve() == Path(args.plot).resolve():
        raise ExprgradValueError(f"--save and --plot both name {args.save!r}")
    for output, suffixes in ((args.save, None), (args.plot, PLOT_SUFFIXES)):
        if output:  # every output is checked before training, not after
            check_output(output, force=args.force, suffixes=suffixes)
    program = program_of(args.file)
    try:
        return _train(args, program)
    except ExprgradError as err:  # located in the .exg file unless it names another file
        raise err.with_source(args.file, program.source) from None


def _train(args: argparse.Namespace, program: Program) -> int:
    config = config_from_program(program)
    pred_fn = predictor(program, config)  # a bad predict= fails before training, not after
    for key in ("steps", "lr", "optimizer", "seed", "batch_size", "reduce", "backend", "dtype"):
        value = getattr(args, key, None)
        if value is not None:
            setattr(config, key, value)
    validate_config(config)
    chunked = wants_chunked(args.data, getattr(args, "chunked", False),
                            getattr(args, "scheduler", None))
    for flag, given in (("--scheduler", getattr(args, "scheduler", None) is not None),
                        ("--chunked", getattr(args, "chunked", False))):
        if given and args.data is None:
            raise ExprgradValueError(f"{flag} trains on --data in chunks; give --data",
                                     hint="e.g. --data 'part-*.csv' --scheduler "
                                     "tcp://HOST:8786")
    if getattr(args, "blocksize", None) is not None and not chunked:
        raise ExprgradValueError("--blocksize is for chunked training",
                                 hint="add --chunked to read one CSV file in blocks")
    init = load_params(args.load, program) if args.load else None
    progress = Progress(config.steps, sys.stderr, not (args.quiet or args.json))
    if chunked:
        return _train_chunked(args, program, config, init, progress)
    fn = program.functions[config.loss]
    examples = None
    if getattr(args, "cols", None) is not None:
        if args.data is None:
            raise ExprgradValueError("--cols picks columns of --data; give --data")
        examples = _picked_examples(args.data, args.cols, fn)
    result = train(program, config=config, csv_path=args.data if examples is None else None,
                   examples=examples, init=init, progress=progress, interruptible=True)
    if examples is None:
        examples = examples_from(program, fn, config, args.data)
    # the forward functions of the loss and the predictor only, on the backend that trained
    module = module_of(program, list({f.name: f for f in (fn, pred_fn) if f}.values()),
                       ("value",), result.backend)
    last = final_loss(program, result, examples, module)  # of the parameters returned
    preds: list[Any] = []
    if pred_fn is not None and len(examples) <= 5000:
        preds = values_of(module, pred_fn, result.params, examples)
    targets = [ex[-1] for ex in examples if ex]  # (a loss of no arguments has no target)
    return _report(args, program, config, result, last, len(examples), preds, targets)


def _picked_examples(path: str, cols: str, fn: Function) -> list[list[Any]]:
    """The examples of an in-memory CSV file with ``--cols`` picking the columns (as chunked
    training picks them: by 0-based index, range or header name)."""
    rows = read_csv(path)
    if not rows:
        raise ExprgradValueError(f"there are no training examples in {path!r}", filename=path)
    fields = len(rows[0][1])
    picked = select_columns(cols, csv_header(path), fields, fn, path)
    out = []
    for line, row in rows:
        if len(row) != fields:
            raise ExprgradValueError(f"line {line} has {len(row)} fields; the file's rows have "
                                     f"{fields}", filename=path)
        out.append(split_row([row[c] for c in picked], fn, path, line))
    return out


def _train_chunked(args: argparse.Namespace, program: Program, config: TrainConfig,
                   init: list[float] | None, progress: Progress) -> int:
    """``exprgrad train --data PATTERN``: training in chunks through Dask (run/chunked.py)."""
    need("dask")
    fn = check_trainable(program, config)
    blocksize = BLOCKSIZE
    if args.blocksize is not None:
        from dask.utils import parse_bytes

        try:
            blocksize = int(parse_bytes(args.blocksize))
        except (ValueError, TypeError, KeyError):
            raise ExprgradValueError(f"--blocksize {args.blocksize!r} is not a size",
                                     hint="e.g. 32MiB, 500kB or 1000000 (bytes)") from None
    source = open_source(args.data, fn, args.cols, blocksize)
    code = loss_code(program, fn, config)
    with connect(args.scheduler, args.scheduler_timeout) as client:
        data = ChunkedData(source, fn, client, config.dtype)
        result = train_chunked(program, data, config=config, init=init, progress=progress,
                               interruptible=True, code=code)
        interrupted = result.stopped is not None and result.stopped.startswith("interrupted")
        # (after Ctrl-C, the parameters are written at once, without another pass for the loss)
        last = math.nan if interrupted else chunked_final_loss(data, code, result)
    return _report(args, program, config, result, last, data.n, [], [])


def _report(args: argparse.Namespace, program: Program, config: TrainConfig,
            result: TrainResult, last: float, n_examples: int, preds: list[Any],
            targets: list[Any]) -> int:
    """Write ``--save`` and ``--plot``, print the summary; the exit code."""
    interrupted = result.stopped is not None and result.stopped.startswith("interrupted")
    if args.save:
        save_params(args.save, program, result.params, force=args.force,
                    extra={"final_loss": last, "steps": result.steps})
    if args.plot:
        save_loss_curve(result.losses, args.plot, title=f"{Path(args.file).name} loss",
                        force=args.force)
        if not (args.json or interrupted):
            print(f"drew the loss curve to {args.plot}")
    if interrupted:  # Ctrl-C: what was trained is written; nothing else is shown
        written = " and ".join(f"{flag} {path}" for flag, path in (("--save", args.save),
                                                                   ("--plot", args.plot)) if path)
        print(f"{result.stopped}" + (f"; wrote {written}" if written else ""), file=sys.stderr)
        if args.json:
            print(json.dumps(jsonable({"stopped": result.stopped, "steps": result.steps,
                                       "final_loss": last, "save": args.save,
                                       "plot": args.plot})))
        return EXIT_INTERRUPTED
    acc = accuracy(preds, targets)
    summary = {
        "file": args.file, "loss_function": config.loss, "optimizer": config.optimizer,
        "lr": config.lr, "steps": result.steps, "final_loss": last,
        "first_loss": result.losses[0] if result.losses else None,
        "seconds": round(result.seconds, 4),
        "steps_per_second": round(result.steps / result.seconds, 1) if result.seconds else None,
        "examples": n_examples, "seed": config.seed, "backend": result.backend,
        "dtype": result.dtype,
        "stopped": result.stopped,
    }
    if acc is not None:
        summary["accuracy"] = acc
    if "chunked" in result.extra:
        summary["chunked"] = result.extra["chunked"]
    if preds and n_examples <= 20:
        summary["predictions"] = preds
        summary["targets"] = targets
    if args.json:
        print(json.dumps(jsonable(summary)))
    else:
        if result.stopped:
            print(f"stopped: {result.stopped}", file=sys.stderr)
        print(f"trained {config.loss} for {result.steps} steps with {config.optimizer} "
              f"(lr {config.lr}) in {result.seconds:.2f}s "
              f"({summary['steps_per_second']} steps/s, {result.backend} backend"
              f"{'' if result.dtype == 'float64' else ', ' + result.dtype})")
        if "chunked" in result.extra:
            c = result.extra["chunked"]
            print(f"in chunks: {c['examples']} examples in {c['files']} {c['format']} file(s), "
                  f"{c['blocks']} block(s), on {c['scheduler']}")
        print(f"final loss: {last:.6g}")
        if acc is not None:
            print(f"training accuracy: {100 * acc:.1f}% ({round(acc * n_examples)} of "
                  f"{n_examples})")
        if preds and n_examples <= 20:
            print("prediction    target")
            for p, target in zip(preds, targets):
                shown = f"{p:+.6f}" if isinstance(p, float) else str(p)
                print(f"{shown:<13} {target}")
        if args.save:
            print(f"saved parameters to {args.save}")
    return 1 if result.stopped else 0


def predict_cli(args: argparse.Namespace) -> int:
    program = program_of(args.file)
    preds = predict_values(program, load_params(args.params, program), csv_path=args.data)
    if args.json:
        print(json.dumps({"predictions": jsonable(preds)}))
    else:
        for p in preds:
            print(p)
    return 0


def predict_values(program: Program, params: list[float], inputs: list[list[Any]] | None = None,
                   csv_path: str | None = None) -> list[Any]:
    """The predictions of trained ``params`` (see ``predictor``) for ``inputs`` (each a list of
    the predicting function's arguments), the rows of a CSV file, or the training data."""
    config = config_from_program(program) if program.train else None
    if config is None:
        raise ExprgradValueError("predict needs the file's 'train' statement to know the loss")
    fn = predictor(program, config)
    if fn is None:
        raise ExprgradValueError("no function to predict with", hint="define 'def predict(x...)'")
    if len(params) != len(program.param_order):
        raise ExprgradValueError(f"expected {len(program.param_order)} parameters, got "
                                 f"{len(params)}")
    if inputs is None and csv_path:
        needed = sum(math.prod(s) for s in fn.arg_shapes)
        inputs = [split_row(row[:needed], fn, csv_path, line)
                  for line, row in read_csv(csv_path)]
    elif inputs is None:
        inputs = examples_from(program, program.functions[config.loss], config)
    else:  # given in Python: each a list of the predicting function's arguments
        inputs = [_arguments(fn, row, k) for k, row in enumerate(inputs)]
    return predictions(program, fn, list(params), inputs, config.backend)


def _arguments(fn: Function, row: Any, k: int) -> list[Any]:
    if not isinstance(row, (list, tuple)) or len(row) != len(fn.arg_names):
        raise ExprgradValueError(f"input {k} must be a list of {len(fn.arg_names)} argument(s) "
                                 f"({', '.join(fn.arg_names)}) for '{fn.name}', got {row!r}"[:300],
                                 hint=f"e.g. [[{', '.join(fn.arg_names)}], ...]")
    return [check_value(name, value, shape)
            for name, value, shape in zip(fn.arg_names, row, fn.arg_shapes)]
