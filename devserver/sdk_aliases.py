"""botocore service names for the aws-sdk integrations whose ARN name is not botocore's.

An ``arn:aws:states:::aws-sdk:bedrockagent:startIngestionJob`` Task names the service
``bedrockagent``; moto's interpreter asks boto3 for a client of exactly that name, and botocore only
knows ``bedrock-agent`` (``UnknownServiceError``). botocore's public way to add a service is a data
directory on ``AWS_DATA_PATH``; ``install()`` makes one under ``devserver/botodata/`` whose
``bedrockagent`` is a symlink to the installed botocore's own ``bedrock-agent`` model (never a copy,
so it always matches the botocore in use), and returns the ``AWS_DATA_PATH`` to set before any
botocore session loads models (botocore reads it when a session's loader is first made).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping

#: alias (the name in the Task's ARN) -> the botocore service it is.
ALIASES: Dict[str, str] = {"bedrockagent": "bedrock-agent"}
DATA_DIR = Path(__file__).resolve().parent / "botodata"


def installed_model(service: str) -> Path:
    """The installed botocore's model directory of ``service`` (``.../botocore/data/<service>``)."""
    import botocore

    path = Path(botocore.__file__).resolve().parent / "data" / service
    if not path.is_dir():
        raise LookupError(f"botocore {botocore.__version__} has no {service} model")
    return path


def install(data_dir: Path = DATA_DIR, aliases: Mapping[str, str] = ALIASES, current: str = "") -> str:
    """Link each alias to its model under ``data_dir``; the ``AWS_DATA_PATH`` to use (``current`` kept after it).

    Safe to run from several processes at once: each link is replaced atomically.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    for alias, service in aliases.items():
        target, link = installed_model(service), data_dir / alias
        if link.is_symlink() and link.resolve() == target:
            continue
        staged = data_dir / f".{alias}.{os.getpid()}"
        staged.unlink(missing_ok=True)
        staged.symlink_to(target, target_is_directory=True)
        os.replace(staged, link)
    return os.pathsep.join(part for part in (str(data_dir), current) if part)
