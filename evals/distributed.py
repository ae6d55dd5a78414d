"""The item loop every `rag eval` mode shares: records computed here, or with `--ray ADDRESS`
by Ray actors that each hold one loaded pipeline (rag.cluster).

A mode gives a builder: `build(settings)` loads what grading needs once and returns the
function item -> record. Locally it is called once; on Ray once per actor, and the items are
dealt to the actors by ray.util.ActorPool, whose `map` yields the records in the items'
order, so records.jsonl is written in the order of a local run and an interrupted run resumes
from it as before. Each actor gets the cluster's CPUs divided among the actors as threads."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from tqdm import tqdm

from rag.cluster import connect, cpus_each, workers
from rag.config import Settings

Builder = Callable[[Settings], Callable[[dict], dict]]


class _Grader:
    """A Ray actor: the mode's grading function, built once."""

    def __init__(self, build: Builder, settings: Settings):
        self.work = build(settings)

    def run(self, item: dict) -> dict:
        return self.work(item)


def graded(settings: Settings, build: Builder, todo: list[dict], desc: str, ray: str | None = None) -> Iterator[dict]:
    """The record of each item of `todo`, in its order."""
    if not todo:
        return
    if not ray:
        work = build(settings)
        yield from (work(item) for item in tqdm(todo, desc=desc, unit="item"))
        return
    cluster = connect(ray)
    from ray.util import ActorPool

    n = min(workers(cluster), len(todo))
    threads = cpus_each(cluster, n)
    actor = cluster.remote(num_cpus=threads)(_Grader)
    each = settings.model_copy(update={"threads": threads})
    pool = ActorPool([actor.remote(build, each) for _ in range(n)])
    yield from tqdm(pool.map(lambda a, item: a.run.remote(item), todo), total=len(todo), desc=f"{desc} ({n} workers)",
                    unit="item")
