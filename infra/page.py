"""The chat page of a deployed stage: ``client/web`` and its ``config.json`` in the stage's bucket.

The stack (``infra/page.json``) makes a private bucket that only its CloudFront distribution reads;
this module fills it. ``make deploy`` publishes at its end; on the CloudFormation path
``make publish-page STAGE=prod`` does it after ``aws cloudformation deploy``, and
``make empty-page STAGE=prod`` empties the bucket so that ``aws cloudformation delete-stack`` can
remove it (CloudFormation deletes no bucket that holds objects).

Every object is served with ``Cache-Control: no-cache``: browsers and CloudFront revalidate (a
``304`` when nothing changed), so a new deploy is what everyone gets next, with no invalidation.
"""
from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple

from infra import stack

WEB_DIR = stack.ROOT / "client" / "web"
CONFIG_KEY = "config.json"
OUTPUTS = ("PageUrl", "PageBucketName")
CACHE_CONTROL = "no-cache"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".json": "application/json",
         ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}


def config_document(ws_url: str, region: str, cognito_domain: Optional[str] = None, client_id: Optional[str] = None,
                    rest_url: Optional[str] = None) -> Dict[str, str]:
    """What the page reads from ``config.json`` (``client/web/app.js``, ``signin.js``): where to connect
    and, when the stage has a user pool, where to sign in. Keys the stage lacks are left out."""
    document = {"wsUrl": ws_url, "restUrl": rest_url.rstrip("/") if rest_url else None, "cognitoDomain": cognito_domain,
                "clientId": client_id, "region": region}
    return {key: value for key, value in document.items() if value}


def config_from_outputs(outputs: Mapping[str, str], region: str) -> Dict[str, str]:
    """``config_document`` from a deployed stage's outputs (the packaged stack's, or make deploy's summary)."""
    return config_document(outputs[stack.URL_OUTPUT], region, outputs.get("UserPoolDomainUrl"), outputs.get("UserPoolClientId"),
                           outputs.get(stack.REST_URL_OUTPUT))


def content_type(path: Path) -> str:
    kind = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"{kind}; charset=utf-8" if kind.startswith("text/") or kind == "application/json" else kind


def page_files(web_dir: Path = WEB_DIR) -> Iterator[Tuple[str, Path]]:
    """``(key, path)`` for each file of the page; a ``config.json`` there (local use) is not published."""
    for path in sorted(p for p in Path(web_dir).rglob("*") if p.is_file()):
        key = path.relative_to(web_dir).as_posix()
        if key != CONFIG_KEY and not any(part.startswith(".") for part in key.split("/")):
            yield key, path


def publish(s3: Any, bucket: str, config: Mapping[str, str], web_dir: Path = WEB_DIR,
            log: Callable[[str], None] = print) -> int:
    """Upload the page and its ``config.json`` to ``bucket``; the number of objects written.
    ``config.json`` goes last, so a page that reads it finds the files it names."""
    count = 0
    for key, path in page_files(web_dir):
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), ContentType=content_type(path),
                      CacheControl=CACHE_CONTROL)
        count += 1
    s3.put_object(Bucket=bucket, Key=CONFIG_KEY, Body=(json.dumps(config, indent=2) + "\n").encode(),
                  ContentType=content_type(Path(CONFIG_KEY)), CacheControl=CACHE_CONTROL)
    log(f"Published the page ({count + 1} files) to s3://{bucket}/")
    return count + 1


def empty(s3: Any, bucket: str, log: Callable[[str], None] = print) -> int:
    """Delete every object of ``bucket`` (the page's: unversioned), so that its stack can delete it."""
    deleted = 0
    for listed in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in listed.get("Contents", [])]
        if keys:
            result = s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            if result.get("Errors"):
                raise SystemExit(f"s3://{bucket}: could not delete {result['Errors'][0]}")
            deleted += len(keys)
    log(f"Emptied s3://{bucket}/ ({deleted} objects)")
    return deleted


def stack_outputs(session: Any, stack_name: str) -> Dict[str, str]:
    (described,) = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {output["OutputKey"]: output.get("OutputValue", "") for output in described.get("Outputs", [])}
    missing = [name for name in OUTPUTS if name not in outputs]
    if missing:
        raise SystemExit(f"{stack_name} has no {', '.join(missing)} output: deploy this version's template first.")
    return outputs


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.page", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["publish", "empty"])
    parser.add_argument("--stack-name", required=True, help="the packaged stack (docs/deploy.md, Path 1)")
    parser.add_argument("--region", help="default: AWS_REGION, AWS_DEFAULT_REGION or the profile's")
    parser.add_argument("--profile")
    args = parser.parse_args(argv)
    import boto3

    session = boto3.session.Session(profile_name=args.profile, region_name=args.region or os.environ.get("AWS_REGION") or None)
    outputs = stack_outputs(session, args.stack_name)
    s3 = session.client("s3")
    if args.command == "publish":
        publish(s3, outputs["PageBucketName"], config_from_outputs(outputs, session.region_name))
        print(f"Sign in and chat: {outputs['PageUrl']}")
    else:
        empty(s3, outputs["PageBucketName"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
