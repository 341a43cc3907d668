"""Progress reporting for long work through :mod:`logging` (works in nnictl trial logs too)."""
from __future__ import annotations

import logging
import time


def _fmt_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Log ``done/total``, rate and ETA at most every ``interval`` seconds (and at the end).

    Args:
        total: number of units of work (``None`` if unknown).
        desc: what is being done, prefixed to each line.
        unit: the unit name shown in the rate.
        interval: minimum seconds between two log lines.
        logger: where to log (default: ``facenas.progress``).
    """

    def __init__(self, total: int | None, desc: str, unit: str = "it", interval: float = 5.0,
                 logger: logging.Logger | None = None, start: int = 0):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.interval = interval
        self.logger = logger or logging.getLogger("facenas.progress")
        self.done = start
        self._start_count = start
        self._t0 = time.monotonic()
        self._last = 0.0
        self.postfix: dict[str, object] = {}

    def update(self, n: int = 1, **postfix: object) -> None:
        self.done += n
        self.postfix.update(postfix)
        now = time.monotonic()
        if now - self._last >= self.interval or (self.total is not None and self.done >= self.total):
            self._last = now
            self.logger.info(self.line())

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self._t0
        return (self.done - self._start_count) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rate = self.rate
        parts = [f"{self.desc}: {self.done}" + (f"/{self.total}" if self.total is not None else "")]
        parts.append(f"{rate:.2f} {self.unit}/s")
        if self.total is not None and rate > 0:
            parts.append(f"ETA {_fmt_seconds((self.total - self.done) / rate)}")
        parts += [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.postfix.items()]
        return " | ".join(parts)

    def close(self) -> None:
        self.logger.info(self.line() + f" | elapsed {_fmt_seconds(time.monotonic() - self._t0)}")
