"""`rag serve --replicas N`: the same FastAPI app (rag.api.app.create_app) run as N Ray Serve
replicas behind one address.

Each replica is a Ray actor that builds the app with the driver's Settings and runs its
lifespan (models loaded, keys bootstrapped), so it answers exactly as `rag serve` does. What
the replicas share lives outside them:
- rows, API keys, rate-limit buckets and job records: the metadata database (PostgreSQL when
  the replicas run on several machines);
- index folders: the data folder (a shared file system); a replica loads a collection's index
  version named by the committed row, so an ingest through any replica is seen by all of them
  on their next request, without a restart (rag.store.collection.IndexCache).
Ray Serve's proxy spreads the requests over the replicas (and streams SSE answers through)."""

from __future__ import annotations

from rag.cluster import connect
from rag.config import Settings


class RagApi:
    """The deployment: the app is built on the replica (serve.ingress's late-bound form)."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def __serve_build_asgi_app__(self):
        from rag.api.app import create_app

        return create_app(self.settings)


def deployment(settings: Settings, replicas: int, cpus: float):
    """The Serve application: `replicas` copies of the API, `cpus` CPU each (its models' threads)."""
    from ray import serve

    api = serve.deployment(serve.ingress()(RagApi), name="rag-api", num_replicas=replicas,
                           ray_actor_options={"num_cpus": cpus}, max_ongoing_requests=64,
                           health_check_period_s=10)
    threads = max(1, int(cpus))
    return api.bind(settings.model_copy(update={"threads": threads}))


def serve_replicas(settings: Settings, replicas: int, host: str, port: int, address: str, blocking: bool = True):
    """Start Serve on the cluster at `address` and run the API there; blocks until Ctrl-C
    unless blocking is False (tests)."""
    ray = connect(address)
    from ray import serve

    cpus = ray.cluster_resources().get("CPU", 1) / replicas  # the cluster's cores, shared out
    serve.start(http_options={"host": host, "port": port})
    return serve.run(deployment(settings, replicas, cpus), name="rag", route_prefix="/", blocking=blocking)
