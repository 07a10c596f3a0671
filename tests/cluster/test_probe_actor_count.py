"""How many probe actors a cluster scan starts (``scaleout.cluster.driver.probe_actor_count``):
one per two scan workers, or ``MXSCAN_PROBE_ACTORS`` when set; a value that is not a whole
number >= 1 is refused by name (no Ray needed)."""

from __future__ import annotations

import pytest

from scaleout.cluster.driver import PROBE_ACTORS_ENV, probe_actor_count


@pytest.mark.parametrize(("workers", "actors"), [(1, 1), (2, 1), (3, 1), (4, 2), (9, 4)])
def test_one_probe_actor_per_two_scan_workers_by_default(workers: int, actors: int) -> None:
    assert probe_actor_count(workers, {}) == actors


def test_the_environment_sets_the_probe_actor_count_whatever_the_workers() -> None:
    assert probe_actor_count(2, {PROBE_ACTORS_ENV: "3"}) == 3
    assert probe_actor_count(64, {PROBE_ACTORS_ENV: " 1 "}) == 1
    assert probe_actor_count(4, {PROBE_ACTORS_ENV: ""}) == 2  # empty: the default


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5"])
def test_a_probe_actor_count_that_is_not_a_whole_number_from_1_is_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match=f"{PROBE_ACTORS_ENV} must be a whole number >= 1, got '{text}'"):
        probe_actor_count(2, {PROBE_ACTORS_ENV: text})
