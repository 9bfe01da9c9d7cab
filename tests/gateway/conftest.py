"""Gateway test fixtures: the config, changeable per test with ``settings``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.config import Config
from tests.conftest import make_config


@pytest.fixture
def config(tmp_path: Path, request: pytest.FixtureRequest) -> Config:
    """The conftest config, with sections changed by indirect parametrisation."""
    sections: dict[str, dict[str, Any]] = getattr(request, "param", {})
    return make_config(tmp_path / "data", **sections)
