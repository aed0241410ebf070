from __future__ import annotations

import pytest
from terraform_config import TerraformConfig, load


@pytest.fixture(scope="session")
def tf() -> TerraformConfig:
    return load()
