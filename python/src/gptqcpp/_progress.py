"""Progress lines on sys.stderr, as the CLI draws them ("label [#####     ] 3/6  ETA 12s  extra"):
redrawn in place on a terminal, one line per 10% elsewhere (a log, a notebook's stream)."""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    WIDTH = 30

    def __init__(self, label: str, total: int, enabled: bool = True):
        self.label, self.total, self.enabled = label, max(int(total), 1), enabled
        self.start = time.monotonic()
        self.tty = enabled and sys.stderr.isatty()
        self.last_decile = -1

    def update(self, done: int, extra: str = "") -> None:
        if not self.enabled:
            return
        decile = done * 10 // self.total
        if not self.tty and decile == self.last_decile:
            return
        self.last_decile = decile
        elapsed = time.monotonic() - self.start
        eta = elapsed / done * (self.total - done) if done > 0 else 0.0
        filled = done * self.WIDTH // self.total
        line = (f"{self.label}  [{'#' * filled}{' ' * (self.WIDTH - filled)}] {done}/{self.total}  "
                f"ETA {format_duration(eta)}" + (f"  {extra}" if extra else ""))
        sys.stderr.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def finish(self, summary: str = "") -> None:
        if not self.enabled:
            return
        if self.tty:
            sys.stderr.write("\n")
        sys.stderr.write(f"{self.label}: done in {format_duration(time.monotonic() - self.start)}"
                         + (f"; {summary}" if summary else "") + "\n")
        sys.stderr.flush()
