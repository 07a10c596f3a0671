"""A one-line progress display: done/total, rate, ETA, counts by outcome.

The scheduler calls :meth:`Progress.add` for every finished target and
:meth:`Progress.tick` from its own periodic task; nothing here awaits or
starts tasks.  On a terminal the line is redrawn in place every 0.2 s; when
the stream is a file or a pipe (a CI log, ``2> scan.log``) a full line is
written every 5 s instead, so logs stay readable and small.

The rate is measured over a sliding window (``RATE_WINDOW`` seconds) rather
than since the start, because a scan's speed changes (resolver cache warming,
slow providers at the end) and the ETA should follow the current speed.
Writing never raises: a closed or broken stream turns the display off, since
a progress line is not worth losing a scan over.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["RATE_WINDOW", "Progress", "Tail", "format_duration"]

#: Seconds of history the rate (and so the ETA) is computed over.
RATE_WINDOW = 30.0
#: Default redraw interval on a terminal, and line interval for files and pipes.
TTY_INTERVAL = 0.2
LOG_INTERVAL = 5.0
#: Rate samples kept per window; bounds memory however fast targets finish.
_SAMPLES_PER_WINDOW = 60
_CLEAR_TO_EOL = "\x1b[K"


def format_duration(seconds: float) -> str:
    """``42s``, ``3m07s``, ``2h05m09s``: short and unambiguous in a log line."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class Tail:
    """Why the last domains take time: how many wait on how many unresponsive targets, and by
    when (wall-clock seconds) the last of those targets is settled at the latest."""

    __slots__ = ("deadline", "domains", "peak_domains", "peak_targets", "targets")

    def __init__(self) -> None:
        self.domains = self.targets = self.peak_domains = self.peak_targets = 0
        self.deadline: float | None = None

    def update(self, domains: int, targets: int, deadline: float | None) -> None:
        self.domains, self.targets = domains, targets
        self.deadline = deadline if targets else None
        self.peak_domains = max(self.peak_domains, domains)
        self.peak_targets = max(self.peak_targets, targets)

    def text(self, now: float) -> str:
        """``3 domains/2 hosts <=41s`` (empty when nothing waits)."""
        if not self.targets:
            return ""
        left = "" if self.deadline is None else f" <={format_duration(max(0.0, self.deadline - now))}"
        return f"{self.domains} domains/{self.targets} hosts{left}"

    def summary(self, now: float) -> dict[str, float | int | None]:
        left = None if self.deadline is None else round(max(0.0, self.deadline - now), 3)
        return {
            "domains": self.domains,
            "hosts": self.targets,
            "settled_within_s": left,
            "peak_domains": self.peak_domains,
            "peak_hosts": self.peak_targets,
        }


def _stream_is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


class Progress:
    """Counts finished targets by outcome and renders them as one status line."""

    def __init__(
        self,
        stream: TextIO,
        *,
        total: int | None,
        interval: float | None = None,
        is_tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        width: int | None = None,
    ) -> None:
        self._stream = stream
        self.total = total
        self.is_tty = _stream_is_tty(stream) if is_tty is None else is_tty
        self.interval = interval if interval is not None else (TTY_INTERVAL if self.is_tty else LOG_INTERVAL)
        self._clock = clock
        self._width = width
        self.done = 0
        self.counts: collections.Counter[str] = collections.Counter()
        self.extra: dict[str, str] = {}
        self._start = clock()
        self._last_write = self._start
        # (time, done) samples; samples[0] is the newest one at or before the window start.
        self._samples: collections.deque[tuple[float, int]] = collections.deque([(self._start, 0)])
        self._enabled = True
        self._finished = False

    def add(self, outcome: str, n: int = 1) -> None:
        """Count ``n`` finished targets with this outcome label."""
        self.done += n
        self.counts[outcome] += n
        now = self._clock()
        # Sampling at most every window/60 seconds keeps the deque small; the
        # rate's error is then at most one sample spacing out of the window.
        if now - self._samples[-1][0] >= RATE_WINDOW / _SAMPLES_PER_WINDOW:
            self._samples.append((now, self.done))
            self._prune(now)

    def set_extra(self, key: str, value: str) -> None:
        """Show ``key=value`` after the counts (e.g. limiter statistics)."""
        self.extra[key] = value

    def rate(self) -> float:
        """Targets per second over the last ``RATE_WINDOW`` seconds (0.0 before any time passed)."""
        now = self._clock()
        self._prune(now)
        then, done_then = self._samples[0]
        return (self.done - done_then) / (now - then) if now > then else 0.0

    def _prune(self, now: float) -> None:
        samples = self._samples
        while len(samples) > 1 and samples[1][0] <= now - RATE_WINDOW:
            samples.popleft()

    def eta(self) -> float | None:
        """Seconds left at the current rate; ``None`` when the total or the rate is unknown."""
        if self.total is None:
            return None
        left = max(0, self.total - self.done)
        if left == 0:
            return 0.0
        rate = self.rate()
        return left / rate if rate > 0 else None

    def render(self) -> str:
        """The current status line (no control characters)."""
        return self._line(f"{self.rate():.1f}/s", self._eta_text())

    def _eta_text(self) -> str | None:
        if self.total is None:
            return None
        eta = self.eta()
        return "eta " + (format_duration(eta) if eta is not None else "--")

    def _line(self, rate: str, tail: str | None) -> str:
        if self.total is not None:
            percent = 100.0 * self.done / self.total if self.total else 100.0
            parts = [f"{self.done}/{self.total} ({percent:.1f}%)", rate]
        else:
            parts = [f"{self.done} done", rate]
        if tail:
            parts.append(tail)
        line = " ".join(parts)
        if self.counts:
            ordered = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
            line += " | " + " ".join(f"{name}={count}" for name, count in ordered)
        if self.extra:
            line += " | " + " ".join(f"{key}={value}" for key, value in self.extra.items())
        return line

    def tick(self) -> None:
        """Write the line if ``interval`` has elapsed since the last write."""
        now = self._clock()
        if self._finished or now - self._last_write < self.interval:
            return
        self._last_write = now
        line = self.render()
        if self.is_tty:
            self._write("\r" + self._fit(line) + _CLEAR_TO_EOL)
        else:
            self._write(line + "\n")

    def finish(self) -> str:
        """Write and return the final summary: totals, elapsed time and average rate."""
        elapsed = self._clock() - self._start
        average = self.done / elapsed if elapsed > 0 else 0.0
        line = "finished " + self._line(f"{average:.1f}/s", f"in {format_duration(elapsed)}")
        self._finished = True
        self._write(("\r" + line + _CLEAR_TO_EOL + "\n") if self.is_tty else (line + "\n"))
        return line

    def _fit(self, line: str) -> str:
        """Cut a redrawn line to the terminal width: a wrapped line cannot be redrawn with ``\\r``."""
        width = self._width
        if width is None:
            try:
                width = os.get_terminal_size(self._stream.fileno()).columns
            except (AttributeError, ValueError, OSError):
                return line
        return line if len(line) < width else line[: max(1, width - 2)] + "…"

    def _write(self, text: str) -> None:
        if not self._enabled:
            return
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            self._enabled = False
