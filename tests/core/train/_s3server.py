"""A real S3-compatible server on loopback for the object-store tests: moto's server mode.

``moto.server.ThreadedMotoServer`` serves the S3 REST API over HTTP on ``127.0.0.1`` (a
free port), so Composer's ``S3ObjectStore`` and streaming's S3 downloader talk to it
through boto3 exactly as to AWS; both read the endpoint from ``S3_ENDPOINT_URL`` and the
credentials from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Dummy credentials; the secret is distinctive so a test can look for it in every file.
ACCESS_KEY = "AKIACM3LEONTESTKEY00"
SECRET_KEY = "cm3leon-test-secret-9f2c41d7e05b-do-not-save"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_s3() -> Iterator[str]:
    """Run moto's S3 server on ``127.0.0.1:<free port>``; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_env(endpoint: str) -> dict[str, str]:
    """The environment that points boto3 (Composer, streaming, the tests) at ``endpoint``."""
    return {"S3_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION}


def client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name=REGION)


def upload_dir(s3: Any, bucket: str, prefix: str, directory: Path) -> None:
    """Upload every file under ``directory`` to ``s3://bucket/prefix/<relative path>``."""
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(directory).as_posix()}")


def all_objects(s3: Any, bucket: str) -> dict[str, bytes]:
    """Every object of ``bucket``: key -> content."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out
