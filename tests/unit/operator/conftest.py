from __future__ import annotations

import pytest
from tests.unit.operator.factories import make_tj

from trainingjob_operator.api import TrainingJob


@pytest.fixture
def tj() -> TrainingJob:
    return make_tj()
