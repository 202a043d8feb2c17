"""Progress of a training run: a tqdm bar on a terminal or in Jupyter, a line per tenth in a log.

Contract: :class:`Progress` shows ``update(step, loss)`` calls. On a terminal it is a tqdm bar
that fits the terminal's width (and follows it when it changes) with the step count, elapsed
time, ETA, steps per second and the loss; in Jupyter (``notebook=True``) tqdm.auto's widget;
when the stream is not a terminal (a log, a pipe) a plain line for every tenth of the run, as
logs expect; nothing when disabled (``--quiet``, ``--json``).
"""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """See the module docstring."""

    def __init__(self, total: int, stream: Any, enabled: bool, *, notebook: bool = False) -> None:
        self.total = max(1, total)
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.start = time.perf_counter()
        self.bar: Any = None
        if enabled and (self.tty or notebook):
            if notebook:
                from tqdm.auto import tqdm
            else:
                from tqdm import tqdm
            self.bar = tqdm(total=total, file=None if notebook else stream, unit="step",
                            dynamic_ncols=True, mininterval=0.1, leave=True)

    @classmethod
    def automatic(cls, total: int) -> Progress:
        """For the Python API: tqdm.auto's bar in a Jupyter kernel, tqdm's on a terminal, nothing
        in a script whose standard error is not a terminal."""
        notebook = "ipykernel" in sys.modules
        return cls(total, sys.stderr, notebook or sys.stderr.isatty(), notebook=notebook)

    def update(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {loss:.6g}", refresh=False)
            self.bar.update(step - self.bar.n)
            return
        if step == self.total or step % max(1, self.total // 10) == 0:
            rate = step / max(time.perf_counter() - self.start, 1e-9)
            self.stream.write(f"step {step}/{self.total}  loss {loss:.6g}  {rate:,.0f} steps/s\n")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
