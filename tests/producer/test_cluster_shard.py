"""A farm whose key prefix is a Redis Cluster hash tag runs, unchanged, on the cluster
node owning that slot: deploy, arq's queue, the workers' scripts, results, the fee
stream and the commit all keep to one slot (docs/SCALING.md). The node refuses any key
of another slot, so a key left outside the prefix would fail these tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.shards import LocalCluster
from producer.client import FarmClient
from producer.schedule import commit_runs
from tests.producer.test_commit import TOKEN, settings_for, token_blocks
from tests.producer.test_commit_resume import declared
from tests.support.farm import running_worker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    nodes = LocalCluster(nodes=2)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


def test_a_key_of_another_slot_is_refused_by_the_node(cluster: LocalCluster) -> None:
    """The control: a prefix that is no hash tag spreads a farm over slots, and a node
    answers MOVED for those it does not own."""
    (_, url), (other_tag, _) = cluster.tags(uuid.uuid4().hex[:6])
    with redis.Redis.from_url(url) as node, pytest.raises(redis.ResponseError, match="MOVED"):
        node.set(f"{other_tag}:anything", b"x")


async def test_a_farm_under_a_hash_tag_runs_and_commits_on_its_node(
    cluster: LocalCluster, tmp_path: Path,
) -> None:
    for n, (tag, url) in enumerate(cluster.tags(uuid.uuid4().hex[:6])):
        (tmp_path / f"w{n}").mkdir()
        settings = settings_for(url, tag, tmp_path).model_copy(
            update={"key_prefix": tag, "queue_name": f"{tag}:queue"})
        mints, transfers = token_blocks(40, 60, tag)
        genesis = [tx.job(1, 1_000, settings.default_fee_limit) for tx in mints]
        block = declared([tx.job(2, 2_000, settings.default_fee_limit) for tx in transfers])
        with running_worker(url, tag, settings.queue_name, tmp_path / f"w{n}", executors=1,
                            extra_env={"WESFARM_CACHE_DIR": str(settings.cache_dir)}):
            async with FarmClient(settings) as farm:
                await farm.deploy(TOKEN, "tok", precompile=True)
                await farm.submit_batch(genesis)
                done = await farm.wait([j.tx_id for j in genesis], timeout=60)
                assert (await farm.commit_block(genesis, done, 1)).committed == 40
                sent = await farm.submit_block(block)
                report = await farm.commit_block(block, await farm.wait(sent, timeout=60), 2)
                assert report.committed == 60 and not report.not_committed
                assert 0 < len(commit_runs(block)) < 60  # both the farm and the commit ran txs
                assert len(await farm.fee_reports()) == 100  # one fee record per tx
        with redis.Redis.from_url(url) as node:
            assert all(key.startswith(tag.encode()) for key in node.scan_iter())
