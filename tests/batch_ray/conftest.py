"""One local Ray instance for the whole test session: 2 CPUs, no dashboard, quiet."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

RAY_CPUS = 2


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    import counting_engines
    import ray  # the ray extra, which make install installs: missing, these tests fail

    from voxpipe.pipelines.batch_ray import LOCAL_SYSTEM_CONFIG

    # The actors unpickle the tests' engine factory without importing tests/.
    ray.cloudpickle.register_pickle_by_value(counting_engines)
    ray.init(
        address="local",  # a Ray of its own, never another run's on this machine
        num_cpus=RAY_CPUS,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=128 * 1024 * 1024,
        _system_config=LOCAL_SYSTEM_CONFIG,  # the actors at the tests' own priority
    )
    try:
        yield ray
    finally:
        ray.shutdown()
