"""Hypothesis profiles (loaded by ``tests/conftest.py`` before any test module is imported).

``HYPOTHESIS_PROFILE`` picks one; unset, it is ``dev``:

* ``dev``: few examples per property, for a quick local run of a file or two.
* ``ci``: many examples and a new random seed each run (``derandomize=False``), so every CI
  run explores inputs the previous ones did not; the falsifying example is printed with the
  blob that replays it (``@reproduce_failure``).

Neither has a per-example deadline: on two cores shared with other work, one slow example is
the machine's load, not a regression (Hypothesis's 200 ms default made such runs flaky).
"""

from __future__ import annotations

import os

from hypothesis import settings

__all__ = ["CI", "DEV", "ENV", "PROFILES", "at_most", "load_profile"]

ENV = "HYPOTHESIS_PROFILE"
DEV, CI = "dev", "ci"
#: name -> settings; ``ci`` at 300 examples keeps the unit suite well inside CI's 30 minutes.
PROFILES = {
    DEV: settings(max_examples=25, deadline=None),
    CI: settings(max_examples=300, deadline=None, derandomize=False, print_blob=True),
}


def load_profile() -> str:
    """Register both profiles and load the one ``HYPOTHESIS_PROFILE`` names; its name."""
    for name, profile in PROFILES.items():
        settings.register_profile(name, profile)
    name = os.environ.get(ENV, DEV)
    if name not in PROFILES:
        raise ValueError(f"{ENV}={name!r}: not one of {', '.join(PROFILES)}")
    settings.load_profile(name)
    return name


def at_most(examples: int) -> settings:
    """The loaded profile's settings with at most ``examples`` examples: for a property whose
    every example is costly (a certificate signed, a file written and read back), said at the
    test.  Under ``dev`` the profile's smaller count still wins."""
    loaded = settings.default
    assert loaded is not None, "load_profile() runs first (tests/conftest.py)"
    return settings(max_examples=min(examples, loaded.max_examples))
