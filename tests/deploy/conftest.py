"""Fixtures for the deployment tests: the packaged stacks, built once per session."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict

import pytest

from infra import stack
from tests.deploy.support import STAGES, isolated_env


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """``chalice package`` (through ``infra.stack.package``, as ``make package`` runs it) per stage."""
    out = tmp_path_factory.mktemp("package")
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            patch.delenv(name)
        for name, value in isolated_env().items():
            patch.setenv(name, value)
        return {stage: stack.package(stage, out / stage).parent for stage in STAGES}


@pytest.fixture(scope="session")
def templates(packaged: Dict[str, Path]) -> Dict[str, Dict[str, Any]]:
    return {stage: json.loads((path / "sam.json").read_text()) for stage, path in packaged.items()}
