"""Where training computes: numpy arrays in memory (the default), or PyTorch tensors on a device.

Contract: a device is named as ``--device`` and ``exprgrad.train(device=...)`` take it:
``cpu`` (numpy, the default), ``torch-cpu`` (PyTorch tensors on the CPU), ``cuda``, ``cuda:N``
or ``mps`` (PyTorch on that accelerator). :func:`check_device` refuses any other name;
:func:`array_namespace` gives ``(xp, device)`` for a PyTorch device, where ``xp`` is
``array_api_compat``'s PyTorch namespace (the one the numpy backend's array-API twins find
for tensors), or says clearly why it cannot (PyTorch not installed, no such device, a dtype
the device lacks) as an :class:`~exprgrad.errors.ExprgradValueError` with a hint.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import ExprgradValueError, Span

#: the device names, for messages
DEVICES = "cpu (numpy, the default), torch-cpu, cuda, cuda:N, mps (PyTorch)"
_NAME = re.compile(r"cpu|torch-cpu|cuda|cuda:[0-9]{1,3}|mps")
_INSTALL = ("install PyTorch (pip install torch; a CUDA build for an NVIDIA GPU: "
            "https://pytorch.org/get-started), or train on numpy: --device cpu")


def check_device(name: str, span: Span | None = None) -> None:
    """Refuse a device name that is none of :data:`DEVICES`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ExprgradValueError(f"no device {name!r}", span, hint=f"devices: {DEVICES}")


def array_namespace(name: str, dtype: str) -> tuple[Any, Any]:
    """``(xp, device)`` to train on the PyTorch device ``name`` (not ``cpu``, which is numpy's)
    in ``dtype``; an ExprgradValueError with a hint when that cannot be done here."""
    check_device(name)
    try:
        import torch
    except ImportError:
        raise ExprgradValueError(f"device {name} trains through PyTorch, which is not installed",
                                 hint=_INSTALL) from None
    try:
        import array_api_compat.torch as xp
    except ImportError:
        raise ExprgradValueError(f"device {name} needs array-api-compat, which is not installed",
                                 hint="pip install array-api-compat (an exprgrad dependency)"
                                 ) from None
    kind = "cpu" if name == "torch-cpu" else name
    if kind.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(kind.partition(":")[2] or 0)
        if count == 0:
            build = f"a CUDA {torch.version.cuda} build" if torch.version.cuda else \
                "a build without CUDA"
            raise ExprgradValueError(
                f"device {name}: no CUDA device is present (PyTorch {torch.__version__}, "
                f"{build})",
                hint="train on the CPU: --device cpu (numpy) or --device torch-cpu; cuda needs "
                "an NVIDIA GPU and a CUDA build of PyTorch (https://pytorch.org/get-started)")
        if index >= count:
            raise ExprgradValueError(f"device {name}: there are {count} CUDA device(s), "
                                     f"cuda:0 to cuda:{count - 1}", hint="--device cuda")
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ExprgradValueError(
                f"device {name}: no MPS device is present (PyTorch {torch.__version__})",
                hint="mps is Apple silicon's GPU; train on the CPU: --device cpu or torch-cpu")
        if dtype == "float64":
            raise ExprgradValueError("device mps computes in float32 only",
                                     hint="add --dtype float32 (dtype=\"float32\")")
    return xp, torch.device(kind)


def to_host(values: Any) -> list[float]:
    """A PyTorch tensor's values as Python floats (copied from its device)."""
    return [float(v) for v in values.detach().cpu().tolist()]


class ArrayOps:
    """What training does with whole arrays, in numpy (``xp`` None) or on a PyTorch device:
    ``put`` an array there in the training dtype, ``zeros`` for an optimizer state, ``select``
    a minibatch's rows, say whether an array is all ``finite``, bring values back to the
    ``host`` as Python floats."""

    def __init__(self, dtype: str, xp: Any = None, device: Any = None) -> None:
        import numpy as np

        self.np, self.xp, self.device, self.dtype = np, xp, device, dtype

    def put(self, values: Any) -> Any:
        if self.xp is None:
            return self.np.asarray(values, dtype=self.dtype)
        return self.xp.asarray(self.np.asarray(values, dtype=self.dtype), device=self.device)

    def zeros(self, n: int) -> Any:
        if self.xp is None:
            return self.np.zeros(n, dtype=self.dtype)
        return self.xp.zeros(n, dtype=getattr(self.xp, self.dtype), device=self.device)

    def select(self, column: Any, idx: list[int]) -> Any:
        if self.xp is None:
            return column[idx]
        return self.xp.take(column, self.xp.asarray(idx, device=self.device), axis=0)

    def finite(self, values: Any) -> bool:
        lib = self.np if self.xp is None else self.xp
        return bool(lib.all(lib.isfinite(values)))

    def host(self, values: Any) -> list[float]:
        if self.xp is None:
            return [float(v) for v in values]
        return to_host(values)
