"""RayExecutor on a cluster of two Ray nodes (`ray.cluster_utils.Cluster`, both on this machine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from railyard.ray import RayExecutor, RayOptions
from railyard.store.sqlite import SqliteStore
from tests.ray_graphs import nodes

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[tuple[str, str]]:
    """A head node with one CPU, and a second node with one CPU and a resource only it has."""
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    second = cluster.add_node(num_cpus=1, resources={"second_box": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    try:
        yield cluster.head_node.node_id, second.node_id
    finally:
        ray.shutdown()
        cluster.shutdown()


async def test_steps_go_to_the_node_their_options_ask_for(two_nodes: tuple[str, str], tmp_path: Path) -> None:
    head, second = two_nodes
    store = SqliteStore(tmp_path / "runs.db")
    pinned = RayExecutor({"where": RayOptions(resources={"second_box": 1})})
    ran_on = await nodes.run(inputs=6, store=store, run_id="pinned", executor=pinned)
    assert set(ran_on) == {second}  # only the second node has the resource
    spread = RayExecutor({"where": RayOptions(scheduling_strategy="SPREAD")})
    anywhere = await nodes.run(inputs=12, store=store, run_id="spread", executor=spread)
    assert set(anywhere) == {head, second}  # spread over both nodes
    finished = [r for r in await store.read("spread") if r.kind == "step_finished" and r.node_id == "where"]
    assert len(finished) == 12  # each branch recorded by this driver as it came back
    await store.aclose()
