"""Training settings: the file's 'train' statement as a TrainConfig, checked; the TrainResult.

Contract: :func:`config_from_program` reads the ``train`` statement (names resolved, values
checked with their source spans); :func:`validate_config` checks settings however they were given.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ExprgradTypeError, ExprgradValueError, Span
from ..ir.program import Program
from .device import check_device
from .losscurve import figure_bytes, loss_figure

#: the most training steps one run may take
MAX_STEPS = 100_000_000

#: the settings a 'train' statement may give, with their types
_OPTION_TYPES: dict[str, Callable[[Any], Any]] = {
    "optimizer": str, "lr": float, "steps": int, "reduce": str, "batch_size": int, "seed": int,
    "momentum": float, "beta1": float, "beta2": float, "eps": float, "backend": str,
    "predict": str, "batch": int, "dtype": str,
}


#: settings of a run that a train statement does not give (the Python API's and the CLI's)
_RUN_SETTINGS: dict[str, Callable[[Any], Any]] = {"device": str}

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
    dtype: str = "float64"  # float32: parameters, data and arithmetic (numpy backend only)
    #: where the numpy backend computes: "cpu" (numpy), or a PyTorch device ("torch-cpu",
    #: "cuda", "cuda:N", "mps"; exprgrad.run.device). Given on the command line or in Python,
    #: never in a train statement (a file trains anywhere)
    device: str = "cpu"


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
    dtype: str = "float64"  # what training computed in; params are Python floats either way
    device: str = "cpu"  # where: numpy ("cpu"), or the PyTorch device named

    @property
    def final_loss(self) -> float:
        """The loss of the last step, computed before that step's update (``losses[-1]``);
        ``exprgrad train`` reports the loss of the parameters returned, after it."""
        return self.losses[-1] if self.losses else math.nan

    def summary(self) -> str:
        """One line: steps, first and final loss, optimizer, backend, number of parameters."""
        first = f"{self.losses[0]:.6g}" if self.losses else "nan"
        text = (f"{self.steps} steps, loss {first} -> {self.final_loss:.6g}, "
                f"{self.config.optimizer} (lr {self.config.lr:g}), backend {self.backend}"
                f"{'' if self.dtype == 'float64' else ' ' + self.dtype}"
                f"{'' if self.device == 'cpu' else ' on ' + self.device}, "
                f"{len(self.params)} parameters")
        return text + (f"; stopped: {self.stopped}" if self.stopped else "")

    def __repr__(self) -> str:  # the dataclass's would print every loss and parameter
        return f"TrainResult({self.summary()})"

    def _repr_html_(self) -> str:
        """Jupyter's display: the summary and the loss curve (matplotlib, when installed)."""
        head = (f"<div><b>TrainResult</b>: {html.escape(self.summary())}; "
                f"{self.seconds:.3g} s</div>")
        if not self.losses:
            return head
        try:
            svg = figure_bytes(loss_figure(self.losses), "svg", "exprgrad loss curve")
        except ExprgradValueError as err:  # no matplotlib: the summary alone, saying why
            return f"{head}\n<div>(no loss curve: {html.escape(err.message)})</div>"
        return f"{head}\n" + svg.decode("utf-8").split("?>", 1)[-1]


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
        except (TypeError, ValueError, OverflowError):
            kinds: dict[Any, str] = {int: "a whole number", float: "a number", str: "a name"}
            kind = kinds[_OPTION_TYPES[key]]
            raise ExprgradValueError(f"'{key}' needs {kind}", span) from None
        setattr(config, "batch_size" if key == "batch" else key, converted)
        validate_config(config, span)  # a value out of range is shown at its option
    for name, span in decl.data:
        if name not in program.data:
            raise ExprgradTypeError(f"'{name}' is not a data set of this file", span)
    validate_config(config, decl.span)
    return config


def settings_of(program: Program, settings: dict[str, Any]) -> TrainConfig:
    """The program's training settings with keyword overrides (the Python API's), checked:
    an unknown name or a value of the wrong type is a clear error."""
    config = config_from_program(program)
    types = {**_OPTION_TYPES, **_RUN_SETTINGS}
    for key, value in settings.items():
        key = "batch_size" if key == "batch" else key
        if key not in types:
            raise ExprgradTypeError(f"unknown training setting {key!r}",
                                     hint="settings: " + ", ".join(sorted(types)))
        kind = types[key]
        wanted = {int: "a whole number", float: "a number", str: "a name"}[kind]  # type: ignore[index]
        if kind is str and not isinstance(value, str) or kind in (int, float) and (
                isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) and kind is int
                or kind is int and value != int(value)):
            raise ExprgradTypeError(f"the setting {key!r} needs {wanted}, got {value!r}")
        setattr(config, key, kind(value))
    validate_config(config)
    return config


def validate_config(config: TrainConfig, span: Span | None = None) -> None:
    if config.optimizer not in OPTIMIZERS:
        raise ExprgradValueError(f"unknown optimizer '{config.optimizer}'", span,
                                 hint="use sgd, momentum or adam")
    if config.reduce not in ("sum", "mean"):
        raise ExprgradValueError("reduce is 'sum' or 'mean'", span)
    if not (config.lr > 0 and math.isfinite(config.lr)):
        raise ExprgradValueError("the learning rate must be a positive number", span)
    if not 0 <= config.steps <= MAX_STEPS:
        raise ExprgradValueError(f"steps must be from 0 to {MAX_STEPS} "
                                 "(exprgrad.run.config.MAX_STEPS)", span)
    for name in ("momentum", "beta1", "beta2"):
        value = getattr(config, name)
        if not 0 <= value < 1:  # (nan fails too)
            raise ExprgradValueError(f"{name} must be at least 0 and below 1, not {value:g}",
                                     span, hint="defaults: momentum 0.9, beta1 0.9, "
                                     "beta2 0.999")
    if not (config.eps > 0 and math.isfinite(config.eps)):
        raise ExprgradValueError(f"eps must be a positive number, not {config.eps:g}", span,
                                 hint="default: 1e-8")
    if config.batch_size < 0:
        raise ExprgradValueError("batch_size must be at least 0 (0: the whole data set)", span)
    if config.backend not in ("python", "numpy", "auto"):
        raise ExprgradValueError("backend is 'python', 'numpy' or 'auto'", span)
    if config.dtype not in ("float64", "float32"):
        raise ExprgradValueError("dtype is 'float64' (the default) or 'float32'", span)
    if config.dtype != "float64" and config.backend == "python":
        raise ExprgradValueError(f"dtype={config.dtype} needs the numpy backend; the python "
                                 "backend computes with Python floats (float64)", span,
                                 hint="set backend=numpy (--backend numpy)")
    check_device(config.device, span)
    if config.device != "cpu" and config.backend == "python":
        raise ExprgradValueError(f"device {config.device} runs the numpy backend's code; the "
                                 "python backend computes with Python floats on the CPU", span,
                                 hint="leave the backend to auto, or set backend=numpy")
