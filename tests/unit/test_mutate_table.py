"""``./dev mutate`` (tests/mutate.py): its module table points at real modules and test files,
and the mutmut configuration it writes mutates only the module asked for."""

from __future__ import annotations

import configparser
from pathlib import Path

from tests.mutate import PACKAGES, TESTS, _config

ROOT = Path(__file__).resolve().parents[2]


def test_every_listed_core_module_and_its_tests_exist() -> None:
    for module, tests in TESTS.items():
        assert (ROOT / module).is_file(), module
        assert module.split("/")[0] in PACKAGES, module
        for test in tests:
            assert (ROOT / "tests" / "unit" / test).is_file(), f"{module}: {test}"


def test_config_mutates_only_the_module_with_its_tests() -> None:
    parser = configparser.ConfigParser()
    parser.read_string(_config("probes/smtp/reply.py", ["tests/unit/test_smtp_reply.py"]))
    section = parser["mutmut"]
    assert section["only_mutate"].split() == ["probes/smtp/reply.py"]
    assert section["source_paths"].split() == list(PACKAGES)
    assert section["pytest_add_cli_args_test_selection"].split() == ["tests/unit/test_smtp_reply.py"]
