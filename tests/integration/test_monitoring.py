"""The alerting rules under Debian's ``promtool`` (installed as ``stack up --monitoring`` does)."""

from __future__ import annotations

import subprocess

import pytest

from infra.stack.base import noop
from infra.stack.packages import apt_install
from infra.stack.prometheus import MONITORING, RULES, binary
from streams.settings import Settings


def ensure_promtool(settings: Settings) -> str:
    """``promtool`` from Debian's ``prometheus`` package, installed when missing (root)."""
    if binary("promtool") is None:
        apt_install(["prometheus"], noop, settings.stack_dir.resolve() / "logs")
    exe = binary("promtool")
    if exe is None:  # pragma: no cover - apt_install raises first
        pytest.fail("promtool missing after installing prometheus")
    return exe


def test_alerting_rules_pass_their_promtool_unit_tests(settings: Settings) -> None:
    promtool = ensure_promtool(settings)
    check = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout
