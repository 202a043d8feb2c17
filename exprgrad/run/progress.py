"""Progress of a training run: a tqdm bar on a terminal or in Jupyter, a line per tenth in a log.

Contract: :class:`Progress` shows ``update(step, loss)`` calls. On a terminal it is a tqdm bar
(made at the first update, so a run refused before its first step leaves no bar) that fits the
terminal's width, with the loss first (a narrow terminal cuts the bar, never a number of the
loss), the step count, the elapsed time and the ETA, and the steps per second where the width
allows (80 columns or more); in Jupyter (``notebook=True``) tqdm.auto's widget when ipywidgets is
installed, else the same text bar; when the stream is not a terminal (a log, a pipe) a plain line
for every tenth of the run, as logs expect; nothing when disabled (``--quiet``, ``--json``).
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any

#: the bar's layout: the loss in front, so that trimming a narrow line never cuts its digits
_NARROW = "loss {desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]"
_WIDE = _NARROW[:-1] + ", {rate_fmt}]"


class Progress:
    """See the module docstring."""

    def __init__(self, total: int, stream: Any, enabled: bool, *, notebook: bool = False) -> None:
        self.total = max(1, total)
        self.stream = stream
        self.enabled = enabled
        self.notebook = notebook
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.start = time.perf_counter()
        self.bar: Any = None

    @classmethod
    def automatic(cls, total: int, enabled: bool | None = None) -> Progress:
        """For the Python API: by default a bar in a Jupyter kernel and on a terminal, nothing
        in a script whose standard error is not a terminal; ``enabled`` decides otherwise."""
        notebook = "ipykernel" in sys.modules
        if enabled is None:
            enabled = notebook or sys.stderr.isatty()
        return cls(total, sys.stderr, enabled, notebook=notebook)

    def _make_bar(self, loss: float) -> Any:
        widget = False
        if self.notebook:
            try:
                import ipywidgets  # noqa: F401

                widget = True
            except ImportError:  # tqdm.auto would warn and fall back to text: choose text
                pass
        if widget:
            from tqdm.auto import tqdm
        else:
            from tqdm import tqdm
        wide = shutil.get_terminal_size((80, 24)).columns >= 80
        return tqdm(total=self.total, file=None if widget else self.stream, unit="step",
                    desc=f"{loss:.4g}",
                    dynamic_ncols=True, mininterval=0.1, leave=True,
                    bar_format=_WIDE if wide else _NARROW)

    def update(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        if self.tty or self.notebook:
            if self.bar is None:
                self.bar = self._make_bar(loss)
            self.bar.set_description_str(f"{loss:.4g}", refresh=False)
            self.bar.update(step - self.bar.n)
            return
        if step == self.total or step % max(1, self.total // 10) == 0:
            rate = step / max(time.perf_counter() - self.start, 1e-9)
            self.stream.write(f"step {step}/{self.total}  loss {loss:.6g}  {rate:,.0f} steps/s\n")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
