from __future__ import annotations

import pytest

from forecast_trainer.logs import quiet_libraries


@pytest.fixture(autouse=True, scope="session")
def _quiet() -> None:
    quiet_libraries()
