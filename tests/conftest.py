"""Shared test configuration.

* Hypothesis profiles: ``default`` (100 examples, no deadline: the machine is shared),
  ``ci`` (fewer examples), ``thorough`` (many); pick one with XPROTO_HYPOTHESIS_PROFILE.
* Paths of the fixtures and of the captured frames.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
WIRE = Path(os.environ.get("XPROTO_WIRE_DIR", str(Path(__file__).resolve().parent.parent / "fixtures" / "shared" / "wire")))

settings.register_profile("default", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=50, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("XPROTO_HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def wire_dir() -> Path:
    if not WIRE.is_dir():
        pytest.skip(f"no captured frames at {WIRE}")
    return WIRE
