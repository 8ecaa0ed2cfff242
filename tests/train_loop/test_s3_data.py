"""The trainer's loader on shards in object storage: `data.shards=s3://...` (moto's S3 server
on loopback, credentials from the environment) gives the same batches as the local folder,
indexed (one ranged GET per sample) and streaming (tars streamed through fsspec)."""

from __future__ import annotations

import pytest

from tests.s3_server import moto_s3
from tests.train_loop.test_data import grace_ctx, keys_of, make_data  # noqa: F401 (fixture)
from vlmdata.core.storage import Location


@pytest.fixture(scope="module")
def s3_shards(dataset):
    with moto_s3() as s3:
        remote = Location(s3.url("loop"))  # endpoint and keys from AWS_* only
        local = dataset["shards"]
        for p in sorted(local.rglob("*")):
            if p.is_file():
                remote.put_file(p, p.relative_to(local).as_posix())
        yield remote.url


@pytest.mark.parametrize(
    "over",
    [["data.mode=indexed", "data.num_workers=0"], ["data.mode=streaming", "data.num_workers=0"]],
)
def test_s3_shards_give_the_local_batches(dataset, s3_shards, tmp_path, grace_ctx, over):  # noqa: F811
    for rank in range(2):
        local = make_data(dataset, tmp_path, grace_ctx, rank, 2, *over)
        remote = make_data(dataset, tmp_path, grace_ctx, rank, 2, *over, f"data.shards={s3_shards}")
        assert remote.root == s3_shards
        assert keys_of(remote.batches(0, 7)) == keys_of(local.batches(0, 7))
