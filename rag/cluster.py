"""Joining a Ray cluster, for the commands that can spread their work over several machines
(`rag ingest --ray`, `rag eval --ray`, `rag serve --replicas`). Everything else runs in one
process and never imports Ray.

Every node runs the same installed project (the same image or virtual environment) and sees
the same data folder (RAG_DATA_DIR on a shared file system) and the same database
(RAG_DATABASE_URL: PostgreSQL when the nodes are separate machines); the driver passes its
Settings to each worker, so the workers use the driver's configuration, not their own
environment's."""

from __future__ import annotations

from rag.errors import ConfigError

INSTALL_HINT = 'pip install "ray[data,serve]>=2.40"'


def ray_module():
    try:
        import ray
    except ImportError as e:
        raise ConfigError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from e
    return ray


def connect(address: str):
    """Ray, connected to the cluster at `address` ("auto": the one started on this machine with
    `ray start --head`, or RAY_ADDRESS; "local": a cluster of this machine's cores started for
    this process alone). Idempotent."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    try:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except ConnectionError as e:
        raise ConfigError(f"no Ray cluster at {address!r} ({e}); start one with `ray start --head`, "
                          "or give --ray local to use this machine's cores") from e
    return ray


def workers(ray) -> int:
    """How many single-model workers the cluster holds: one per CPU."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def cpus_each(ray, n: int) -> int:
    """Each of `n` workers' whole share of the cluster's CPUs (its model's threads), at least one."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)) // n)
