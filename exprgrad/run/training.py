"""Training: gradient descent driven by generated value-and-gradient code, no graph at run time.

Contract: :func:`train` takes a program (or a path) and settings (the file's ``train`` statement,
overridden by keyword arguments) and returns a :class:`TrainResult` with the loss history and the
parameters. The batch loss is the sum over the batch's examples of the per-example loss (the
notebook's ``sum((yout - ygt)**2 ...)``), or the mean with ``reduce=mean``. Minibatches are
shuffled from ``random.Random(seed)``; the same seed gives bit-identical losses. A non-finite loss
or gradient stops training at that step and keeps the last good parameters.
"""

from __future__ import annotations

import contextlib
import math
import operator
import random
import time
import types
from collections.abc import Callable, Sequence
from typing import Any

from ..emit.build import module_of
from ..emit.load import entry_point
from ..emit.module import initial_params
from ..emit.steps import SETTINGS, STATE, STEP_KINDS
from ..errors import ExprgradError, ExprgradLimitError, ExprgradTypeError, ExprgradValueError
from ..ir.graph import substitute
from ..ir.program import Function, Program
from ..lower.nn import call_net
from .config import TrainConfig, TrainResult, config_from_program, validate_config
from .data import examples_from
from .device import ArrayOps, array_namespace
from .optimizer import Optimizer
from .progress import Progress


def _batches(n: int, config: TrainConfig, rng: random.Random) -> list[list[int]]:
    if config.batch_size <= 0 or config.batch_size >= n:
        return [list(range(n))]
    order = list(range(n))
    rng.shuffle(order)
    return [order[i:i + config.batch_size] for i in range(0, n, config.batch_size)]


#: the hint of a scalar limit when training
_TRAIN_HINT = ("train with the numpy backend (--backend numpy, or backend=numpy in the train "
               "statement), or make the network smaller")


def _numpy_installed() -> bool:
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


def _use_numpy(config: TrainConfig, n_examples: int, n_params: int) -> bool:
    if config.backend == "numpy" or config.device != "cpu":  # (a device runs numpy modules)
        if not _numpy_installed():
            raise ExprgradValueError("the numpy backend needs numpy, which is not installed",
                                     hint="pip install numpy, or train with backend=python")
        return True
    if config.backend == "python" or not _numpy_installed():
        return False
    # auto: float32 is numpy's; batches of NUMPY_BATCH examples, or networks of NUMPY_PARAMS
    # parameters, are faster as array operations than unrolled into scalar statements
    return config.dtype != "float64" or n_params >= NUMPY_PARAMS or (
        config.batch_size or n_examples) >= NUMPY_BATCH


#: with backend=auto, batches of at least this many examples use the numpy backend
NUMPY_BATCH = 32
#: ... and so do programs with at least this many parameter elements
NUMPY_PARAMS = 2_000


def _per_example_step(module: Any, name: str, examples: list[list[Any]]
                      ) -> Callable[[Any, list[int]], tuple[float, Any]]:
    """``(params, indices) -> (summed loss, summed gradient)``, one call of ``f_grad`` per
    example (either backend): for a loss of no arguments, which has no batch functions."""
    loss_grad = entry_point(module, name, "grad")

    def per_example(params: list[float], idx: list[int]) -> tuple[float, list[float]]:
        total, acc = loss_grad(params, *examples[idx[0]])
        for i in idx[1:]:
            value, g = loss_grad(params, *examples[i])
            total += value
            acc = list(map(operator.add, acc, g))
        return float(total), acc

    return per_example


class FusedStep:
    """Training through a generated step (:mod:`exprgrad.emit.steps`): ``(params, indices) ->
    (summed loss, new params)``, the optimizer's state kept here. ``columns`` holds one sequence
    per argument (lists for the python backend, arrays for numpy), ``select`` takes a minibatch
    out of one, ``zeros`` makes a state vector and ``finite`` says whether new parameters are
    all finite. The full batch goes through the module's step specialised to the examples
    (``with_data``: the module was made for exactly these examples), else its unrolled step
    when it has one for that many examples."""

    def __init__(self, module: Any, name: str, columns: list[Any], n_examples: int,
                 config: TrainConfig, zeros: Callable[[], Any],
                 select: Callable[[Any, list[int]], Any], finite: Callable[[Any], bool],
                 with_data: bool = False) -> None:
        kind = STEP_KINDS[config.optimizer]
        self.looped = entry_point(module, name, kind)
        found = module.ENTRY_POINTS[name].get(kind + "_unrolled")
        self.unrolled = getattr(module, found) if found and getattr(
            module, "UNROLLED", {}).get(name) == n_examples else None
        found = module.ENTRY_POINTS[name].get(kind + "_data") if with_data else None
        self.data = getattr(module, found) if found else None
        self.columns, self.select, self.finite = columns, select, finite
        self.everything = list(range(n_examples))
        self.config = config
        self.state: list[Any] = [zeros() for n in STATE[config.optimizer] if n != "t"]
        self.t = 0
        self.settings = [getattr(config, n) for n in SETTINGS[config.optimizer]]

    def __call__(self, params: Any, idx: list[int]) -> tuple[float, Any]:
        whole = idx == self.everything
        if whole and self.data is not None:
            scale, counter = self._next(len(idx))
            loss, new, *self.state = self.data(params, *self.state, *counter, *self.settings,
                                               scale)
            return float(loss), new
        columns = self.columns if whole else [self.select(c, idx) for c in self.columns]
        return self.on(params, columns, len(idx), whole)

    def on(self, params: Any, columns: list[Any], size: int, whole: bool = False
           ) -> tuple[float, Any]:
        """One step on a batch of ``size`` examples given as ``columns`` (one per argument;
        chunked training passes the batches it gathered): ``(summed loss, new params)``."""
        scale, counter = self._next(size)
        step = self.unrolled if whole and self.unrolled is not None else self.looped
        loss, new, *self.state = step(params, *self.state, *counter, *columns, *self.settings,
                                      scale)
        return float(loss), new

    def _next(self, size: int) -> tuple[float, tuple[int, ...]]:
        """The gradient's scale for a batch of ``size``, and the step counter (adam's)."""
        self.t += 1
        return (1.0 / size if self.config.reduce == "mean" else 1.0,
                (self.t,) if self.config.optimizer == "adam" else ())


def _column(np: Any, values: list[Any], dtype: str, name: str) -> Any:
    """One argument's values for every example as an array of ``dtype``; a finite number that
    the type cannot hold (1e39 in float32) is an error, not an infinity."""
    with np.errstate(over="ignore"):
        column = np.asarray(values, dtype=dtype)
    if not np.isfinite(column).all():
        wide = np.asarray(values, dtype=np.float64)
        bad = np.isfinite(wide) & ~np.isfinite(column)
        if bad.any():
            example = int(np.argwhere(bad)[0][0])
            raise ExprgradValueError(
                f"example {example}: a value of '{name}' ({wide[bad][0]:g}) does not fit "
                f"{dtype}", hint="train with dtype=float64, or scale the data")
    return column


def _finite_list(values: list[float]) -> bool:
    # (a sum of finite numbers may overflow: then each is looked at)
    return math.isfinite(sum(values)) or all(map(math.isfinite, values))


def unroll_size(program: Program, fn: Function, config: TrainConfig, n_examples: int) -> int:
    """The batch size to unroll a training step for: the whole data set when it is trained as
    one batch of at most UNROLL_EXAMPLES examples (0: none)."""
    whole = config.batch_size <= 0 or config.batch_size >= n_examples
    return n_examples if whole and n_examples <= UNROLL_EXAMPLES and fn.inputs else 0


def flat_examples(examples: list[list[Any]]) -> list[list[list[float]]]:
    """Per example, per argument, its elements in row-major order (for a step specialised to
    the examples)."""
    def flat(value: Any) -> list[float]:
        if not isinstance(value, list):
            return [float(value)]
        return [float(v) for item in value for v in flat(item)]

    return [[flat(arg) for arg in example] for example in examples]


def module_steps(program: Program) -> tuple[tuple[str, ...], int,
                                            tuple[str, list[list[list[float]]]] | None]:
    """``(steps, unroll, data)`` for :func:`~exprgrad.emit.scalar.generate` when compiling a
    file: sgd's step, the train statement's optimizer's, and, when the train statement's data
    are in the file and trained as one batch of at most UNROLL_EXAMPLES, their variants
    unrolled for that many examples and specialised to those examples. A train statement with
    a mistake adds nothing here (training reports it)."""
    if program.train is None:
        return ("sgd",), 0, None
    try:
        config = config_from_program(program)
        fn = program.functions[config.loss]
        examples = examples_from(program, fn, config) if fn.uses_params else []
    except ExprgradError:
        return ("sgd",), 0, None
    steps = ("sgd",) + ((config.optimizer,) if config.optimizer != "sgd" else ())
    unroll = unroll_size(program, fn, config, len(examples)) if examples else 0
    return steps, unroll, (fn.name, flat_examples(examples)) if unroll else None


#: the most examples a training step is unrolled for (beyond it, the step loops over the batch)
UNROLL_EXAMPLES = 16


def train(program: Program, *, config: TrainConfig | None = None, csv_path: str | None = None,
          init: Sequence[float] | None = None, progress: Progress | None = None,
          module: types.ModuleType | None = None, interruptible: bool = False,
          examples: list[list[Any]] | None = None) -> TrainResult:
    """Run gradient descent; see the module docstring. With ``interruptible``, Ctrl-C ends the
    run after the last whole step and the result says so (``stopped``); otherwise it
    propagates. ``examples`` (one argument list per example, checked) replace the file's data
    and ``csv_path``."""

    config = config or config_from_program(program)
    fn = trainable_loss(program, config)
    given = examples is not None
    if examples is None:
        examples = examples_from(program, fn, config, csv_path)
    use_numpy = _use_numpy(config, len(examples), len(program.param_order))
    if config.dtype != "float64" and not use_numpy:  # (auto chose python: no numpy)
        raise ExprgradValueError(f"dtype={config.dtype} needs the numpy backend, and numpy is "
                                 "not installed", hint="pip install numpy")
    n = len(program.param_order)
    wanted = STEP_KINDS[config.optimizer]
    fused: FusedStep | None = None
    if not use_numpy:
        if module is not None and fn.inputs and wanted not in module.ENTRY_POINTS[fn.name]:
            module = None  # made for another optimizer: a module of this one is made
        unroll = unroll_size(program, fn, config, len(examples))
        with_data = module is None and csv_path is None and not given and unroll > 0
        try:
            module = module or module_of(
                program, [fn], (wanted, wanted + "_unrolled", wanted + "_data") if fn.inputs
                else ("grad",), hint=_TRAIN_HINT, steps=(config.optimizer,), unroll=unroll,
                data=(fn.name, flat_examples(examples)) if with_data else None)
        except ExprgradLimitError:
            if config.backend == "python" or not _numpy_installed():
                raise
            use_numpy = True  # backend=auto: too large for the scalar backend, not for numpy
    # numpy arrays, or PyTorch tensors on config.device (the modules' array-API twins)
    arrays = ArrayOps(config.dtype, *array_namespace(config.device, config.dtype)) if (
        config.device != "cpu") else None
    if use_numpy:
        import numpy as np

        arrays = arrays or ArrayOps(config.dtype)
        twins = arrays.xp is not None
        if fn.inputs:
            module_np = module_of(program, [fn], (wanted,), "numpy", dtype=config.dtype,
                                  steps=(config.optimizer,), array_api=twins)
            columns = [arrays.put(_column(np, [ex[i] for ex in examples], config.dtype, name))
                       for i, name in enumerate(fn.arg_names)]
            fused = FusedStep(module_np, fn.name, columns, len(examples), config,
                              lambda: arrays.zeros(n), arrays.select, arrays.finite)
        else:  # a loss of no arguments: its gradient, and the optimizer on arrays
            batch_grad = _per_example_step(module_of(program, [fn], ("grad",), "numpy",
                                                     dtype=config.dtype, array_api=twins),
                                           fn.name, examples)
    else:
        assert module is not None, "made above for the scalar backend"
        if wanted in module.ENTRY_POINTS[fn.name]:
            fused = FusedStep(module, fn.name, [list(c) for c in zip(*examples)],
                              len(examples), config, lambda: [0.0] * n,
                              lambda c, idx: [c[i] for i in idx], _finite_list, with_data)
        else:
            batch_grad = _per_example_step(module, fn.name, examples)

    rng = random.Random(config.seed)
    params = list(init) if init is not None else initial_params(program, config.seed)
    if arrays is not None:  # updated as whole arrays
        params = arrays.put(params)
    opt = Optimizer(config, params)
    losses: list[float] = []
    stopped = None
    start = time.perf_counter()
    if progress:
        progress.start = start
    start_params, step = params, 0
    quiet = contextlib.ExitStack()
    if use_numpy:  # overflow is found and reported below, not warned about by numpy on the way
        quiet.enter_context(np.errstate(all="ignore"))
    try:
        for step in range(1, config.steps + 1):
            epoch_loss = 0.0
            batch_list = _batches(len(examples), config, rng)
            start_params = params
            for idx in batch_list:
                if fused is not None:
                    value, updated = fused(params, idx)
                    if config.reduce == "mean":
                        value *= 1.0 / len(idx)
                    if not (math.isfinite(value) and fused.finite(updated)):
                        stopped = (f"step {step}: the loss, its gradient or the update is not "
                                   f"finite (loss = {value}); kept the parameters from before "
                                   "this step")
                        break
                    if not all(map(fused.finite, fused.state)):  # adam's v = g*g overflowed
                        stopped = (f"step {step}: the {config.optimizer} state is not finite "
                                   f"(a gradient too large to square?); kept the parameters "
                                   "from before this step")
                        break
                    params = updated
                    epoch_loss += value
                    continue
                value, grads = batch_grad(params, idx)
                if config.reduce == "mean":
                    scale = 1.0 / len(idx)
                    value *= scale
                    grads = opt.each(lambda g, s=scale: g * s, grads)
                if not (math.isfinite(value) and opt.finite(grads)):
                    stopped = (f"step {step}: the loss or its gradient is not finite "
                               f"(loss = {value}); kept the parameters from before this step")
                    break
                updated = opt.step(params, grads)
                if not opt.finite(updated):
                    stopped = (f"step {step}: the update made a parameter infinite (loss = "
                               f"{value}); kept the parameters from before this step")
                    break
                params = updated
                epoch_loss += value
            if stopped:
                params = start_params  # (a minibatch of this step may have updated them)
                break
            losses.append(epoch_loss / (len(batch_list) if config.reduce == "mean" else 1))
            if progress:
                progress.update(step, losses[-1])
    except KeyboardInterrupt:
        if not interruptible:
            raise
        done = len(losses)
        if done < step:  # the step in progress is not finished: the parameters from before it
            params = start_params
        stopped = (f"interrupted during step {done + 1}: kept the parameters of the {done} "
                   "whole step(s) before it")
    finally:
        quiet.close()
    seconds = time.perf_counter() - start
    if progress:
        progress.close()
    params = arrays.host(params) if arrays is not None else [float(p) for p in params]
    return TrainResult(losses, params, program.param_names, len(losses), seconds, config,
                       stopped, "numpy" if use_numpy else "python", dtype=config.dtype,
                       device=config.device)


def final_loss(program: Program, result: TrainResult, examples: list[list[Any]],
               module: types.ModuleType) -> float:
    """The batch loss of the final parameters over all examples (sum or mean, as trained);
    ``module`` has the loss's value function (on either backend)."""
    fn = program.functions[result.config.loss]
    values = values_of(module, fn, result.params, examples)
    try:
        total = math.fsum(values)
    except (OverflowError, ValueError):  # inf - inf, or a sum beyond the largest float
        total = sum(values)
    return total / len(examples) if result.config.reduce == "mean" else total


def values_of(module: types.ModuleType, fn: Function, params: Sequence[float],
              rows: list[list[Any]]) -> list[Any]:
    """``fn``'s value (through ``module``'s value function, on its backend) for each row of
    arguments (a row may hold more, such as a target, after them): floats or lists."""
    f = entry_point(module, fn.name, "value")
    n_args = len(fn.arg_names)
    head = [params] if fn.uses_params else []
    if module.BACKEND != "numpy":
        return [f(*head, *row[:n_args]) for row in rows]
    import numpy as np

    if not n_args:  # nothing to batch: the same value for every row
        return [np.asarray(f(*head)).tolist()] * len(rows)
    columns = [np.asarray([row[i] for row in rows], dtype=np.float64) for i in range(n_args)]
    return np.asarray(f(*head, *columns)).tolist()  # type: ignore[no-any-return]


def trainable_loss(program: Program, config: TrainConfig) -> Function:
    """The loss ``config`` names, checked: settings valid, parameters used, one scalar out."""
    validate_config(config)
    if config.loss not in program.functions:
        raise ExprgradValueError(f"no function '{config.loss}' to train")
    fn = program.functions[config.loss]
    if not fn.uses_params:
        raise ExprgradTypeError(f"'{fn.name}' uses no parameters; there is nothing to train",
                                fn.span)
    if len(fn.outputs) != 1 or fn.outputs[0].shape != ():
        raise ExprgradTypeError(f"the loss '{fn.name}' must return one scalar", fn.span)
    return fn


def predictor(program: Program, config: TrainConfig) -> Function | None:
    """The function that maps an input to a prediction: ``predict=``, a def named ``predict``,
    or (when the file has one network, of one input and one result) that network applied to
    the loss's first argument."""
    name = config.predict or ("predict" if "predict" in program.functions else None)
    if name is not None:
        if name not in program.functions:
            raise ExprgradValueError(f"no function '{name}' to predict with")
        return program.functions[name]
    loss = program.functions[config.loss]
    if len(program.nets) != 1 or not loss.arg_shapes:
        return None

    net = next(iter(program.nets.values()))
    forward = net.forward  # a network of a user's layer type: one input, one result
    if forward is not None and (len(forward.inputs) != 1 or len(forward.outputs) != 1):
        return None
    shape = forward.arg_shapes[0] if forward is not None else (net.nin,)
    if loss.arg_shapes[0] != shape:
        return None
    graph = program.graph
    x = graph.make("input", (), ("predict", loss.arg_names[0], 0), shape)
    graph.name(x, loss.arg_names[0])
    out = (substitute(graph, forward.outputs, {forward.inputs[0]: x})[0] if forward is not None
           else call_net(graph, net, x))
    return Function("predict", [loss.arg_names[0]], [shape], [x], [out], loss.span,
                    uses_params=True)


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
                inputs: list[list[Any]], backend: str = "auto") -> list[Any]:
    """``fn``'s value for each row of ``inputs`` on ``backend``: "python", "numpy", or "auto"
    (numpy for 32 rows or more, or for a program too large for the scalar backend, when numpy
    is installed)."""
    use_numpy = backend == "numpy" or (backend == "auto" and _numpy_installed()
                                       and len(inputs) >= NUMPY_BATCH)
    module = None
    if not use_numpy:
        try:
            module = module_of(program, [fn], ("value",), hint=_PREDICT_HINT)
        except ExprgradLimitError:
            if backend == "python" or not _numpy_installed():
                raise
    if module is None:
        module = module_of(program, [fn], ("value",), "numpy")
    return values_of(module, fn, params, inputs)


#: the hint of a scalar limit when predicting
_PREDICT_HINT = "predict with the numpy backend (backend=numpy in the train statement)"
