"""Training: gradient descent driven by generated value-and-gradient code, no graph at run time.

Contract: :func:`train` takes a program (or a path) and settings (the file's ``train`` statement,
overridden by keyword arguments) and returns a :class:`TrainResult` with the loss history and the
parameters. The batch loss is the sum over the batch's examples of the per-example loss (the
notebook's ``sum((yout - ygt)**2 ...)``), or the mean with ``reduce=mean``. Minibatches are
shuffled from ``random.Random(seed)``; the same seed gives bit-identical losses. A non-finite loss
or gradient stops training at that step and keeps the last good parameters.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import operator
import random
import sys
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import __version__
from .api import entry_point
from .errors import ExprgradError, ExprgradTypeError, ExprgradValueError, Span
from .evaluate import check_value
from .lower import Function, Program

OPTIMIZERS = ("sgd", "momentum", "adam")


@dataclass
class TrainConfig:
    loss: str
    data: list[str]
    optimizer: str = "sgd"
    lr: float = 0.05
    steps: int = 100
    reduce: str = "sum"
    batch_size: int = 0  # 0: full batch
    seed: int = 0
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    backend: str = "auto"
    predict: str | None = None


@dataclass
class TrainResult:
    losses: list[float]
    params: list[float]
    names: list[str]
    steps: int
    seconds: float
    config: TrainConfig
    stopped: str | None = None  # why training stopped early (a non-finite loss), else None
    backend: str = "python"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else math.nan


_OPTION_TYPES: dict[str, Callable[[Any], Any]] = {
    "optimizer": str, "lr": float, "steps": int, "reduce": str, "batch_size": int, "seed": int,
    "momentum": float, "beta1": float, "beta2": float, "eps": float, "backend": str,
    "predict": str, "batch": int,
}


def config_from_program(program: Program) -> TrainConfig:
    """The settings of the file's ``train`` statement (validated, with their spans in errors)."""
    decl = program.train
    if decl is None:
        raise ExprgradValueError(f"{program.filename} has no 'train' statement",
                                 hint="add a line like 'train loss(xs, ys): lr=0.05, steps=200'")
    if decl.func not in program.functions:
        raise ExprgradTypeError(f"'train' names no function '{decl.func}'", decl.span)
    config = TrainConfig(decl.func, [name for name, _ in decl.data])
    for key, (value, span) in decl.options.items():
        if key not in _OPTION_TYPES:
            raise ExprgradValueError(f"unknown training option '{key}'", span,
                                     hint="options: " + ", ".join(sorted(_OPTION_TYPES)))
        try:
            converted = _OPTION_TYPES[key](value)
            if isinstance(value, float) and _OPTION_TYPES[key] is int and value != int(value):
                raise ValueError
        except (TypeError, ValueError):
            raise ExprgradValueError(f"'{key}' needs a {_OPTION_TYPES[key].__name__}", span
                                     ) from None
        setattr(config, "batch_size" if key == "batch" else key, converted)
    for name, span in decl.data:
        if name not in program.data:
            raise ExprgradTypeError(f"'{name}' is not a data set of this file", span)
    validate_config(config, decl.span)
    return config


def validate_config(config: TrainConfig, span: Span | None = None) -> None:
    if config.optimizer not in OPTIMIZERS:
        raise ExprgradValueError(f"unknown optimizer '{config.optimizer}'", span,
                                 hint="use sgd, momentum or adam")
    if config.reduce not in ("sum", "mean"):
        raise ExprgradValueError("reduce is 'sum' or 'mean'", span)
    if not (config.lr > 0 and math.isfinite(config.lr)):
        raise ExprgradValueError("the learning rate must be a positive number", span)
    if config.steps < 0:
        raise ExprgradValueError("steps must be at least 0", span)
    if config.batch_size < 0:
        raise ExprgradValueError("batch_size must be at least 0 (0: the whole data set)", span)
    if config.backend not in ("python", "numpy", "auto"):
        raise ExprgradValueError("backend is 'python', 'numpy' or 'auto'", span)


def examples_from(program: Program, fn: Function, config: TrainConfig,
                  csv_path: str | None = None) -> list[list[Any]]:
    """One argument list per example, checked against the loss's argument shapes."""
    if csv_path is not None:
        columns = _csv_rows(csv_path)
        examples = [_split_row(row, fn, csv_path, i + 1) for i, row in enumerate(columns)]
    else:
        if len(config.data) != len(fn.arg_names):
            raise ExprgradTypeError(f"'{fn.name}' takes {len(fn.arg_names)} arguments; 'train' "
                                    f"feeds it {len(config.data)} data sets",
                                    program.train.span if program.train else None)
        sets = [program.data[name] for name in config.data]
        sizes = {len(s) for s in sets}
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
        raise ExprgradValueError("there are no training examples")
    return examples


def _csv_rows(path: str) -> list[list[float]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            raw = [r for r in csv.reader(fh) if r]
    except OSError as err:
        raise ExprgradValueError(f"cannot read {path!r}: {err.strerror}") from None
    rows = []
    for number, row in enumerate(raw, 1):
        try:
            rows.append([float(v) for v in row])
        except ValueError:
            if number == 1:
                continue
            raise ExprgradValueError(f"{path}: row {number} holds a value that is not a number"
                                     ) from None
    return rows


def _split_row(row: list[float], fn: Function, path: str, number: int) -> list[Any]:
    """CSV columns fill the loss's arguments in order: x[3], y takes columns 0-2 and 3."""
    needed = sum(math.prod(s) for s in fn.arg_shapes)
    if len(row) != needed:
        raise ExprgradValueError(f"{path}: row {number} has {len(row)} columns; "
                                 f"'{fn.name}' needs {needed}")
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


def model_signature(program: Program) -> str:
    """Identifies the parameter layout: a saved file fits exactly the programs with this value."""
    text = "\n".join(f"{n}:{program.params[t].node.shape}" for n, (t, _) in
                     zip(program.param_names, program.param_order))
    return hashlib.sha256(text.encode()).hexdigest()


def save_params(path: str, program: Program, params: Sequence[float], *, force: bool = False,
                extra: dict[str, Any] | None = None) -> None:
    from .files import write_output

    payload = {
        "exprgrad": __version__,
        "source": Path(program.filename).name,
        "source_sha256": hashlib.sha256(program.source.encode()).hexdigest(),
        "model_signature": model_signature(program),
        "params": {name: value for name, value in zip(program.param_names, params)},
        **(extra or {}),
    }
    write_output(path, json.dumps(payload, indent=2, allow_nan=True) + "\n", force=force)


def load_params(path: str, program: Program) -> list[float]:
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ExprgradValueError(f"cannot read parameters from {path!r}: {err}") from None
    if not isinstance(payload, dict) or "params" not in payload:
        raise ExprgradValueError(f"{path!r} is not a parameter file written by exprgrad")
    if payload.get("model_signature") != model_signature(program):
        raise ExprgradValueError(f"{path!r} holds the parameters of another program "
                                 f"({payload.get('source', '?')})",
                                 hint="its parameter names or shapes differ from this file's")
    values = payload["params"]
    try:
        return [float(values[name]) for name in program.param_names]
    except (KeyError, TypeError, ValueError):
        raise ExprgradValueError(f"{path!r} is missing parameters or holds non-numbers") from None


# ---------------------------------------------------------------------------------------------


class _Optimizer:
    """sgd, momentum or adam on the flat parameter vector: a list of floats (scalar backend) or a
    numpy array (numpy backend, whole-array operations). The formulas are written once and
    applied elementwise either way, so both backends compute the same numbers."""

    def __init__(self, config: TrainConfig, params: Any) -> None:
        self.c = config
        self.t = 0
        self.array = not isinstance(params, list)
        if self.array:
            import numpy as np

            self.sqrt: Callable[[Any], Any] = np.sqrt
            self.finite: Callable[[Any], bool] = lambda g: bool(np.isfinite(g).all())
            self.v: Any = np.zeros(len(params))
            self.m: Any = np.zeros(len(params))
        else:
            self.sqrt = math.sqrt
            self.finite = lambda g: all(map(math.isfinite, g))
            self.v = [0.0] * len(params)
            self.m = [0.0] * len(params)

    def each(self, f: Callable[..., Any], *vectors: Any, outputs: int = 1) -> Any:
        """``f`` elementwise: on whole arrays at once, or item by item over lists (one call per
        parameter; with several ``outputs``, f returns a tuple, regrouped into one list each)."""
        if self.array:
            return f(*vectors)
        results = list(map(f, *vectors))
        return results if outputs == 1 else tuple(map(list, zip(*results)))

    def step(self, params: Any, grads: Any) -> Any:
        c = self.c
        if c.optimizer == "sgd":
            return self.each(lambda p, g: p - c.lr * g, params, grads)
        if c.optimizer == "momentum":
            self.v = self.each(lambda v, g: c.momentum * v + g, self.v, grads)
            return self.each(lambda p, v: p - c.lr * v, params, self.v)
        self.t += 1
        b1, b2, sqrt = c.beta1, c.beta2, self.sqrt
        k1 = 1 - b1 ** self.t
        k2 = 1 - b2 ** self.t

        def adam(p: Any, g: Any, m: Any, v: Any) -> tuple[Any, Any, Any]:
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            return p - c.lr * (m / k1) / (sqrt(v / k2) + c.eps), m, v

        params, self.m, self.v = self.each(adam, params, grads, self.m, self.v, outputs=3)
        return params


class Progress:
    """A one-line progress bar on a terminal; a line per tenth of the run otherwise."""

    def __init__(self, total: int, stream: Any, enabled: bool) -> None:
        self.total = max(1, total)
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.start = time.perf_counter()
        self.last = -1.0

    def update(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        rate = step / max(now - self.start, 1e-9)
        if self.tty:
            if now - self.last < 0.05 and step != self.total:
                return
            self.last = now
            filled = int(30 * step / self.total)
            bar = "#" * filled + "-" * (30 - filled)
            self.stream.write(f"\r[{bar}] step {step}/{self.total}  loss {loss:.6g}  "
                              f"{rate:,.0f} steps/s ")
            self.stream.flush()
        elif step == self.total or step % max(1, self.total // 10) == 0:
            self.stream.write(f"step {step}/{self.total}  loss {loss:.6g}  {rate:,.0f} steps/s\n")

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _batches(n: int, config: TrainConfig, rng: random.Random) -> list[list[int]]:
    if config.batch_size <= 0 or config.batch_size >= n:
        return [list(range(n))]
    order = list(range(n))
    rng.shuffle(order)
    return [order[i:i + config.batch_size] for i in range(0, n, config.batch_size)]


def _use_numpy(config: TrainConfig, n_examples: int) -> bool:
    if config.backend == "numpy":
        return True
    if config.backend == "python":
        return False
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return n_examples * max(1, config.batch_size and min(config.batch_size, n_examples)) >= 0 and (
        (config.batch_size or n_examples) >= NUMPY_BATCH)


#: with backend=auto, batches of at least this many examples use the numpy backend
NUMPY_BATCH = 32


def _scalar_batch_step(module: Any, name: str, examples: list[list[Any]]
                       ) -> Callable[[list[float], list[int]], tuple[float, list[float]]]:
    """``(params, indices) -> (summed loss, summed gradient)`` through ``name_grad_sum``."""
    if "grad_sum" not in module.ENTRY_POINTS[name]:
        # a loss of no arguments has no f_grad_sum: one call per example
        loss_grad = entry_point(module, name, "grad")

        def per_example(params: list[float], idx: list[int]) -> tuple[float, list[float]]:
            total, acc = loss_grad(params, *examples[idx[0]])
            for i in idx[1:]:
                value, g = loss_grad(params, *examples[i])
                total += value
                acc = list(map(operator.add, acc, g))
            return total, acc

        return per_example
    summed = entry_point(module, name, "grad_sum")
    columns = [list(c) for c in zip(*examples)]
    everything = list(range(len(examples)))

    def step(params: list[float], idx: list[int]) -> tuple[float, list[float]]:
        if idx == everything:
            return summed(params, *columns)  # type: ignore[no-any-return]
        return summed(params, *[[c[i] for i in idx] for c in columns])  # type: ignore[no-any-return]

    return step


def train(program: Program, *, config: TrainConfig | None = None, csv_path: str | None = None,
          init: Sequence[float] | None = None, progress: Progress | None = None,
          module: types.ModuleType | None = None) -> TrainResult:
    """Run gradient descent; see the module docstring."""
    from .api import module_from_code
    from .codegen import generate

    config = config or config_from_program(program)
    validate_config(config)
    if config.loss not in program.functions:
        raise ExprgradValueError(f"no function '{config.loss}' to train")
    fn = program.functions[config.loss]
    if not fn.uses_params:
        raise ExprgradTypeError(f"'{fn.name}' uses no parameters; there is nothing to train",
                                fn.span)
    if len(fn.outputs) != 1 or fn.outputs[0].shape != ():
        raise ExprgradTypeError(f"the loss '{fn.name}' must return one scalar", fn.span)
    examples = examples_from(program, fn, config, csv_path)
    use_numpy = _use_numpy(config, len(examples))
    if use_numpy:
        from .npgen import numpy_batch_step

        batch_grad = numpy_batch_step(program, fn, examples)
    else:
        module = module or module_from_code(generate(program), "exg_train",
                                            f"<exprgrad:{program.filename}>")
        batch_grad = _scalar_batch_step(module, fn.name, examples)

    rng = random.Random(config.seed)
    if init is not None:
        params = list(init)
    else:
        init_module = module or module_from_code(generate(program), "exg_init",
                                                 f"<exprgrad:{program.filename}>")
        params = list(init_module.init_params(config.seed))
    if use_numpy:  # updated as whole arrays
        import numpy as np

        params = np.asarray(params, dtype=np.float64)  # type: ignore[assignment]
    opt = _Optimizer(config, params)
    losses: list[float] = []
    stopped = None
    start = time.perf_counter()
    if progress:
        progress.start = start
    for step in range(1, config.steps + 1):
        epoch_loss = 0.0
        batch_list = _batches(len(examples), config, rng)
        for idx in batch_list:
            value, grads = batch_grad(params, idx)
            if config.reduce == "mean":
                scale = 1.0 / len(idx)
                value *= scale
                grads = opt.each(lambda g, s=scale: g * s, grads)
            if not (math.isfinite(value) and opt.finite(grads)):
                stopped = (f"step {step}: the loss or its gradient is not finite "
                           f"(loss = {value}); kept the parameters from before this step")
                break
            params = opt.step(params, grads)
            epoch_loss += value
        if stopped:
            break
        losses.append(epoch_loss / (len(batch_list) if config.reduce == "mean" else 1))
        if progress:
            progress.update(step, losses[-1])
    seconds = time.perf_counter() - start
    if progress:
        progress.close()
    params = [float(p) for p in params]
    return TrainResult(losses, params, program.param_names, len(losses), seconds, config,
                       stopped, "numpy" if use_numpy else "python")


def final_loss(program: Program, result: TrainResult, examples: list[list[Any]],
               module: types.ModuleType) -> float:
    """The batch loss of the final parameters over all examples (sum or mean, as trained)."""
    loss = entry_point(module, result.config.loss, "value")
    total = math.fsum(loss(result.params, *ex) for ex in examples)
    return total / len(examples) if result.config.reduce == "mean" else total


def predictor(program: Program, config: TrainConfig) -> Function | None:
    """The function that maps an input to a prediction: ``predict=``, a def named ``predict``,
    or (when the file has one network) that network applied to the loss's first argument."""
    name = config.predict or ("predict" if "predict" in program.functions else None)
    if name is not None:
        if name not in program.functions:
            raise ExprgradValueError(f"no function '{name}' to predict with")
        return program.functions[name]
    loss = program.functions[config.loss]
    if len(program.nets) != 1 or not loss.arg_shapes:
        return None
    from .nn import call_net

    net = next(iter(program.nets.values()))
    if loss.arg_shapes[0] != (net.nin,):
        return None
    graph = program.graph
    x = graph.make("input", (), ("predict", loss.arg_names[0], 0), (net.nin,))
    graph.name(x, loss.arg_names[0])
    out = call_net(graph, net, x)
    fn = Function("predict", [loss.arg_names[0]], [(net.nin,)], [x], [out], loss.span,
                  uses_params=True)
    return fn


def accuracy(preds: list[Any], targets: list[Any]) -> float | None:
    """Classification accuracy when the targets look like labels: -1/+1 (the sign decides),
    0/1 (0.5 decides) or one-hot vectors (the largest output decides); else None."""
    if not preds or len(preds) != len(targets):
        return None
    if all(isinstance(t, float) for t in targets):
        labels = set(targets)
        if labels <= {-1.0, 1.0}:
            hits = sum((p > 0) == (t > 0) for p, t in zip(preds, targets))
        elif labels <= {0.0, 1.0}:
            hits = sum((p > 0.5) == (t > 0.5) for p, t in zip(preds, targets))
        else:
            return None
        return hits / len(targets)
    if all(isinstance(t, list) and sorted(t)[-1] == 1.0 and sum(t) == 1.0 for t in targets):
        hits = sum(max(range(len(p)), key=p.__getitem__) == t.index(1.0)
                   for p, t in zip(preds, targets) if isinstance(p, list))
        return hits / len(targets)
    return None


def predictions(program: Program, fn: Function, params: list[float],
                inputs: list[list[Any]]) -> list[Any]:
    from .api import module_from_code
    from .codegen import generate

    extra = replace(program, functions={fn.name: fn})
    module = module_from_code(generate(extra), "exg_predict", f"<exprgrad:{program.filename}>")
    f = entry_point(module, fn.name, "value")
    n_args = len(fn.arg_names)
    return [f(params, *ex[:n_args]) for ex in inputs]


# ---------------------------------------------------------------------------------------------


def train_cli(args: argparse.Namespace) -> int:
    from .api import module_from_code, program_of
    from .codegen import generate
    from .files import write_output

    if not Path(args.file).is_file():
        raise ExprgradValueError(f"no such file: {args.file!r}", filename=args.file)
    program = program_of(args.file)
    config = config_from_program(program)
    for key in ("steps", "lr", "optimizer", "seed", "batch_size", "reduce", "backend"):
        value = getattr(args, key, None)
        if value is not None:
            setattr(config, key, value)
    validate_config(config)
    init = load_params(args.load, program) if args.load else None
    progress = Progress(config.steps, sys.stderr, not (args.quiet or args.json))
    module = module_from_code(generate(program), "exg_train", f"<exprgrad:{args.file}>")
    result = train(program, config=config, csv_path=args.data, init=init, progress=progress,
                   module=module)
    fn = program.functions[config.loss]
    examples = examples_from(program, fn, config, args.data)
    last = final_loss(program, result, examples, module) if not result.stopped else (
        result.losses[-1] if result.losses else math.nan)
    if args.save:
        save_params(args.save, program, result.params, force=args.force,
                    extra={"final_loss": last, "steps": result.steps})
    if args.plot:
        from .plot import loss_curve_png, loss_curve_svg

        if args.plot.lower().endswith(".svg"):
            write_output(args.plot, loss_curve_svg(result.losses, f"{Path(args.file).name} loss"),
                         force=args.force)
        elif args.plot.lower().endswith(".png"):
            write_output(args.plot, loss_curve_png(result.losses), force=args.force)
        else:
            raise ExprgradValueError("--plot writes a .png or .svg file")
    pred_fn = predictor(program, config)
    preds: list[Any] = []
    if pred_fn is not None and len(examples) <= 5000:
        preds = predictions(program, pred_fn, result.params, examples)
    targets = [ex[-1] for ex in examples]
    acc = accuracy(preds, targets)
    summary = {
        "file": args.file, "loss_function": config.loss, "optimizer": config.optimizer,
        "lr": config.lr, "steps": result.steps, "final_loss": last,
        "first_loss": result.losses[0] if result.losses else None,
        "seconds": round(result.seconds, 4),
        "steps_per_second": round(result.steps / result.seconds, 1) if result.seconds else None,
        "examples": len(examples), "seed": config.seed, "backend": result.backend,
        "stopped": result.stopped,
    }
    if acc is not None:
        summary["accuracy"] = acc
    if preds and len(examples) <= 20:
        summary["predictions"] = preds
        summary["targets"] = targets
    if args.json:
        from .evaluate import jsonable

        print(json.dumps(jsonable(summary)))
    else:
        if result.stopped:
            print(f"stopped: {result.stopped}", file=sys.stderr)
        print(f"trained {config.loss} for {result.steps} steps with {config.optimizer} "
              f"(lr {config.lr}) in {result.seconds:.2f}s "
              f"({summary['steps_per_second']} steps/s, {result.backend} backend)")
        print(f"final loss: {last:.6g}")
        if acc is not None:
            print(f"training accuracy: {100 * acc:.1f}% ({round(acc * len(examples))} of "
                  f"{len(examples)})")
        if preds and len(examples) <= 20:
            print("prediction    target")
            for p, ex in zip(preds, examples):
                shown = f"{p:+.6f}" if isinstance(p, float) else str(p)
                print(f"{shown:<13} {ex[-1]}")
        if args.save:
            print(f"saved parameters to {args.save}")
    return 1 if result.stopped else 0


def predict_cli(args: argparse.Namespace) -> int:
    from .api import program_of

    program = program_of(args.file)
    config = config_from_program(program) if program.train else None
    params = load_params(args.params, program)
    if config is None:
        raise ExprgradValueError("predict needs the file's 'train' statement to know the loss")
    fn = predictor(program, config)
    if fn is None:
        raise ExprgradValueError("no function to predict with", hint="define 'def predict(x...)'")
    if args.data:
        rows = _csv_rows(args.data)
        needed = sum(math.prod(s) for s in fn.arg_shapes)
        inputs = [_split_row(row[:needed], fn, args.data, i + 1) for i, row in enumerate(rows)]
    else:
        inputs = examples_from(program, program.functions[config.loss], config)
    preds = predictions(program, fn, params, inputs)
    if args.json:
        from .evaluate import jsonable

        print(json.dumps({"predictions": jsonable(preds)}))
    else:
        for p in preds:
            print(p)
    return 0
