"""A real S3 API on loopback for the storage tests: moto's standalone server (`moto[server]`,
the `moto_server` entry point of https://github.com/getmoto/moto), spoken to by boto3 and s3fs
exactly as they speak to AWS. Nothing is mocked in the client: requests go over HTTP.

The server runs as a child process on a free 127.0.0.1 port; credentials and the endpoint are
set the way users set them (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL) for the
duration, and restored afterwards.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from vlmdata.core.net import free_port

KEY, SECRET = "testing", "testing"


@dataclass(frozen=True)
class S3:
    endpoint: str
    bucket: str

    @property
    def options(self) -> dict[str, Any]:
        """fsspec storage_options for this server (what `--storage-options` would carry)."""
        return {"endpoint_url": self.endpoint, "key": KEY, "secret": SECRET}

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Every object under prefix/, by name relative to it (read with boto3)."""
        c = self.client()
        out = {}
        pages = c.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix + "/")
        for page in pages:
            for obj in page.get("Contents", []):
                body = c.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
                out[obj["Key"][len(prefix) + 1 :]] = body
        return out


def _wait_up(endpoint: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto server not answering at {endpoint} after {timeout} s")


@contextlib.contextmanager
def moto_s3(bucket: str = "vlm-test") -> Iterator[S3]:
    """Start moto's S3 server, make `bucket`, export the AWS_* variables; undo all on exit."""
    import s3fs

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    try:
        _wait_up(endpoint, proc)
        os.environ.update(env)
        s3fs.S3FileSystem.clear_instance_cache()  # no file system bound to an older endpoint
        server = S3(endpoint, bucket)
        server.client().create_bucket(Bucket=bucket)
        yield server
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        s3fs.S3FileSystem.clear_instance_cache()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
