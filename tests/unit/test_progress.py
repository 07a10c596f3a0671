"""Progress line: rendering, rate over a sliding window, ETA, tty and log modes."""

from __future__ import annotations

import io

import pytest

from engine.progress import LOG_INTERVAL, RATE_WINDOW, TTY_INTERVAL, Progress, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    total: int | None, *, tty: bool, width: int | None = None
) -> tuple[Progress, io.StringIO, FakeClock]:
    stream = io.StringIO()
    clock = FakeClock()
    return Progress(stream, total=total, is_tty=tty, clock=clock, width=width), stream, clock


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.4, "0s"), (42, "42s"), (59.6, "1m00s"), (187, "3m07s"), (7509, "2h05m09s"), (-3, "0s")],
    ids=["zero", "rounds-down", "seconds", "rounds-up-to-minute", "minutes", "hours", "negative-clamped"],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_render_shows_done_total_percent_rate_eta_and_counts() -> None:
    progress, _, clock = make(1000, tty=False)
    for _ in range(10):
        clock.now += 1.0
        progress.add("success", 8)
        progress.add("invalid-input")
    progress.add("unknown-error")
    # 91 done in 10 s: 9.1/s; 909 left -> 99.9 s.
    assert progress.rate() == pytest.approx(9.1)
    assert progress.eta() == pytest.approx(909 / 9.1)
    assert progress.render() == (
        "91/1000 (9.1%) 9.1/s eta 1m40s | success=80 invalid-input=10 unknown-error=1"
    )


def test_extra_fields_follow_the_counts_in_insertion_order() -> None:
    progress, _, clock = make(10, tty=False)
    clock.now += 2
    progress.add("success", 2)
    progress.set_extra("smtp", "12/64")
    progress.set_extra("dns", "3/s")
    progress.set_extra("smtp", "13/64")
    assert progress.render().endswith("| success=2 | smtp=13/64 dns=3/s")


def test_unknown_total_has_no_eta_or_percent() -> None:
    progress, _, clock = make(None, tty=False)
    clock.now += 4
    progress.add("success", 20)
    assert progress.eta() is None
    assert progress.render() == "20 done 5.0/s | success=20"


@pytest.mark.parametrize("tty", [True, False], ids=["tty", "log"])
def test_a_streamed_list_without_total_shows_count_rate_and_time_only(tty: bool) -> None:
    # A pipe or FIFO is read once, so nothing counted it: no percentage, no ETA, ever.
    progress, stream, clock = make(None, tty=tty)
    clock.now += LOG_INTERVAL
    progress.add("success", 10)
    progress.tick()
    assert stream.getvalue().strip("\r\n").removesuffix("\x1b[K") == "10 done 2.0/s | success=10"
    clock.now += 5
    assert progress.finish() == "finished 10 done 1.0/s in 10s | success=10"


def test_eta_unknown_before_any_rate_and_zero_when_complete() -> None:
    progress, _, clock = make(5, tty=False)
    assert progress.rate() == 0.0 and progress.eta() is None
    assert progress.render() == "0/5 (0.0%) 0.0/s eta --"
    clock.now += 1
    progress.add("success", 5)
    assert progress.eta() == 0.0
    assert "(100.0%)" in progress.render() and "eta 0s" in progress.render()


def test_rate_follows_the_sliding_window_not_the_whole_run() -> None:
    progress, _, clock = make(100_000, tty=False)
    # A slow first minute (1/s), then a fast phase (100/s) longer than the window.
    for _ in range(60):
        clock.now += 1
        progress.add("success")
    for _ in range(int(RATE_WINDOW) * 2 * 10):
        clock.now += 0.1
        progress.add("success", 10)
    assert progress.rate() == pytest.approx(100.0, rel=0.03)
    left = 100_000 - progress.done
    assert progress.eta() == pytest.approx(left / 100.0, rel=0.03)
    # Samples are thinned and pruned, so memory does not grow with targets.
    assert len(progress._samples) <= 62


def test_rate_decays_when_nothing_finishes() -> None:
    progress, _, clock = make(None, tty=False)
    for _ in range(100):
        clock.now += 0.1
        progress.add("success", 10)
    fast = progress.rate()
    clock.now += RATE_WINDOW
    assert progress.rate() < fast / 2


def test_log_mode_writes_one_full_line_per_interval() -> None:
    progress, stream, clock = make(100, tty=False)
    assert progress.interval == LOG_INTERVAL
    progress.add("success")
    progress.tick()
    assert stream.getvalue() == ""  # interval not yet elapsed
    clock.now += LOG_INTERVAL
    progress.tick()
    clock.now += 1
    progress.tick()  # too soon again
    clock.now += LOG_INTERVAL
    progress.add("success")
    progress.tick()
    lines = stream.getvalue().split("\n")
    assert lines[-1] == "" and len(lines) == 3
    assert lines[0].startswith("1/100 (1.0%)") and lines[1].startswith("2/100 (2.0%)")
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


def test_tty_mode_redraws_in_place() -> None:
    progress, stream, clock = make(100, tty=True)
    assert progress.interval == TTY_INTERVAL
    for _ in range(3):
        clock.now += TTY_INTERVAL
        progress.add("success")
        progress.tick()
    out = stream.getvalue()
    assert out.count("\r") == 3 and out.count("\x1b[K") == 3 and "\n" not in out
    assert out.endswith("\r" + progress.render() + "\x1b[K")


def test_tty_line_is_cut_to_the_terminal_width() -> None:
    progress, stream, clock = make(100, tty=True, width=30)
    progress.set_extra("limiter", "x" * 100)
    clock.now += 1
    progress.tick()
    drawn = stream.getvalue().removeprefix("\r").removesuffix("\x1b[K")
    assert len(drawn) < 30 and drawn.endswith("…")


@pytest.mark.parametrize("tty", [True, False], ids=["tty", "log"])
def test_finish_writes_and_returns_the_summary_then_ticks_stop(tty: bool) -> None:
    progress, stream, clock = make(40, tty=tty)
    clock.now += 8
    progress.add("success", 30)
    progress.add("invalid-input", 10)
    summary = progress.finish()
    assert summary == "finished 40/40 (100.0%) 5.0/s in 8s | success=30 invalid-input=10"
    assert stream.getvalue().endswith(summary + ("\x1b[K\n" if tty else "\n"))
    before = stream.getvalue()
    clock.now += 100
    progress.tick()
    assert stream.getvalue() == before


def test_a_broken_stream_turns_the_display_off_instead_of_raising() -> None:
    stream = io.StringIO()
    clock = FakeClock()
    progress = Progress(stream, total=None, clock=clock, is_tty=False, interval=1.0)
    stream.close()
    clock.now += 2
    progress.add("success")
    progress.tick()
    assert progress.finish().startswith("finished 1 done")


def test_tty_detection_defaults_from_the_stream() -> None:
    assert Progress(io.StringIO(), total=None).is_tty is False
