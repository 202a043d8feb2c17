"""Progress of a training run on a terminal (one updating line) or in a log (a line per tenth).
"""

from __future__ import annotations

import time
from typing import Any


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
