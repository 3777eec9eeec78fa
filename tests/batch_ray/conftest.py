"""One local Ray cluster for the whole test session: a 2-CPU head, no dashboard, quiet.

It is Ray's own test cluster (``ray.cluster_utils.Cluster``), so a test can add
a worker node with CPUs of its own and remove it mid-job.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

RAY_CPUS = 2


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    """The session's ``ray.cluster_utils.Cluster``, this process connected to it."""
    import counting_engines
    import ray  # the ray extra, which make install installs: missing, these tests fail
    from ray.cluster_utils import Cluster

    from voxpipe.pipelines.batch_ray import LOCAL_SYSTEM_CONFIG

    # The actors unpickle the tests' engine factory without importing tests/.
    ray.cloudpickle.register_pickle_by_value(counting_engines)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": RAY_CPUS,
            "include_dashboard": False,
            "object_store_memory": 128 * 1024 * 1024,
            "_system_config": LOCAL_SYSTEM_CONFIG,  # the actors at the tests' own priority
        },
    )
    try:
        # Its own address, never another run's Ray on this machine.
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
