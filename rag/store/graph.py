"""The knowledge graph of a collection: entities and relations, each with its supporting chunks.

A networkx Graph keyed by `entity_key` (so name variants are one node). Node attributes:
`name` (a display form), `title` (ids of chunks of documents *about* this entity, from
document titles) and `mention` (ids of chunks that mention it). Edge attributes: `rels`,
relation -> ids of the chunks that state it, and `heads`, relation -> the key of its subject
(the graph is undirected; "A designed by B" is not "B designed by A"). Removing chunks subtracts their ids; a node,
relation or edge disappears exactly when its last supporting chunk is gone.

Persistence: node-link JSON (`graph.json`) inside the collection's version folder, written
by the `EXTRAS` hook of rag/store/collection.py in the same transaction as the other indexes, so it
switches atomically with them. Extraction itself lives in ingest/ (rag must not import
ingest): the ingest code sets `EXTRACTOR` around `apply_changes`; when it is unset (deletes,
or RAG_GRAPH=off) the graph only loses the removed chunks' facts.

Limits: the whole graph is held in memory and rewritten per change (fine to ~10^5 chunks)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from rag.entities import entity_key
from rag.types import Chunk, Triple

FILE = "graph.json"
FORMAT = 1


@dataclass(frozen=True)
class Facts:
    """What one chunk says: entities as (role, surface) with role 'title' or 'mention', and triples."""

    chunk_id: int
    entities: tuple[tuple[str, str], ...]
    triples: tuple[Triple, ...] = ()


Extractor = Callable[[list[Chunk]], list[Facts]]
EXTRACTOR: ContextVar[Extractor | None] = ContextVar("graph_extractor", default=None)


@contextmanager
def extraction(extractor: Extractor | None) -> Iterator[None]:
    """Within this block, `apply_changes` extracts facts from added chunks with `extractor`."""
    token = EXTRACTOR.set(extractor)
    try:
        yield
    finally:
        EXTRACTOR.reset(token)


class KnowledgeGraph:
    def __init__(self, g=None):
        import networkx as nx

        self.g = g if g is not None else nx.Graph()
        self._by_chunk: dict[int, set[str]] | None = None
        self._surnames: dict[str, list[str]] | None = None

    # -- building --------------------------------------------------------------------------
    def add(self, facts: Iterable[Facts]) -> None:
        self._by_chunk = self._surnames = None
        for f in facts:
            for role, surface in f.entities:
                self._node(surface)[role].add(f.chunk_id)
            for t in f.triples:
                a, b = entity_key(t.subject), entity_key(t.object)
                if not a or not b or a == b:
                    continue
                self._node(t.subject), self._node(t.object)
                if not self.g.has_edge(a, b):
                    self.g.add_edge(a, b, rels={}, heads={})
                edge = self.g.edges[a, b]
                edge["rels"].setdefault(t.relation, set()).add(t.chunk_id)
                edge.setdefault("heads", {}).setdefault(t.relation, a)  # the subject: the edge has no direction

    def _node(self, surface: str) -> dict:
        k = entity_key(surface)
        if not self.g.has_node(k):
            self.g.add_node(k, name=surface.strip(), title=set(), mention=set())
        return self.g.nodes[k]

    def remove_chunks(self, chunk_ids: Iterable[int]) -> None:
        """Drop the support of these chunks; facts left with no support disappear."""
        gone = set(chunk_ids)
        if not gone:
            return
        self._by_chunk = self._surnames = None
        for a, b, d in list(self.g.edges(data=True)):
            for rel in list(d["rels"]):
                d["rels"][rel] -= gone
                if not d["rels"][rel]:
                    del d["rels"][rel]
                    d.get("heads", {}).pop(rel, None)
            if not d["rels"]:
                self.g.remove_edge(a, b)
        for n, d in list(self.g.nodes(data=True)):
            d["title"] -= gone
            d["mention"] -= gone
            if not d["title"] and not d["mention"]:
                self.g.remove_node(n)  # its edges had support only from its own chunks

    # -- reading ---------------------------------------------------------------------------
    def __contains__(self, key: str) -> bool:
        return self.g.has_node(key)

    def find(self, name: str) -> str | None:
        k = entity_key(name)
        return k if self.g.has_node(k) else None

    def chunks_of(self, key: str) -> set[int]:
        d = self.g.nodes[key]
        return d["title"] | d["mention"]

    def supporting_chunks(self) -> set[int]:
        out: set[int] = set()
        for _n, d in self.g.nodes(data=True):
            out |= d["title"] | d["mention"]
        for _a, _b, d in self.g.edges(data=True):
            for ids in d["rels"].values():
                out |= ids
        return out

    def entities_in(self, chunk_id: int) -> set[str]:
        """Keys of the entities a chunk mentions or is about (an inverted index built once)."""
        if self._by_chunk is None:
            by: dict[int, set[str]] = {}
            for n, d in self.g.nodes(data=True):
                for c in d["title"] | d["mention"]:
                    by.setdefault(c, set()).add(n)
            self._by_chunk = by
        return self._by_chunk.get(chunk_id, set())

    def surnames(self) -> dict[str, list[str]]:
        """Last word -> titled multi-word entities ending with it (built once per graph)."""
        if self._surnames is None:
            by: dict[str, list[str]] = {}
            for n, d in self.g.nodes(data=True):
                words = n.split()
                if d["title"] and len(words) > 1 and not words[-1].isdigit():
                    by.setdefault(words[-1], []).append(n)
            self._surnames = by
        return self._surnames

    def neighbours(self, key: str) -> list[tuple[str, dict[str, set[int]]]]:
        """(neighbour key, relation -> supporting chunk ids), best supported first."""
        out = [(m, self.g.edges[key, m]["rels"]) for m in self.g.neighbors(key)]
        return sorted(out, key=lambda x: (-sum(len(v) for v in x[1].values()), x[0]))

    def stats(self) -> dict:
        rels: dict[str, int] = {}
        for _a, _b, d in self.g.edges(data=True):
            for r in d["rels"]:
                rels[r] = rels.get(r, 0) + 1
        top = sorted(self.g.degree, key=lambda x: -x[1])[:10]
        return {"nodes": self.g.number_of_nodes(), "edges": self.g.number_of_edges(),
                "title_entities": sum(1 for _n, d in self.g.nodes(data=True) if d["title"]),
                "supporting_chunks": len(self.supporting_chunks()),
                "top_relations": dict(sorted(rels.items(), key=lambda x: -x[1])[:10]),
                "top_degree": [(self.g.nodes[n]["name"], deg) for n, deg in top]}

    # -- persistence -----------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Node-link JSON, written to a temporary file, fsynced and renamed into place."""
        import networkx as nx

        data = nx.node_link_data(self.g, edges="edges")
        for n in data["nodes"]:
            n["title"], n["mention"] = sorted(n["title"]), sorted(n["mention"])
        for e in data["edges"]:
            e["rels"] = {r: sorted(ids) for r, ids in sorted(e["rels"].items())}
        data["graph"] = {"format": FORMAT}
        tmp = folder / (FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / FILE)

    @classmethod
    def load(cls, folder: Path) -> KnowledgeGraph:
        """The graph of a version folder; an empty graph where none was built."""
        import networkx as nx

        p = folder / FILE
        if not p.exists():
            return cls()
        data = json.loads(p.read_text(encoding="utf-8"))
        for n in data["nodes"]:
            n["title"], n["mention"] = set(n["title"]), set(n["mention"])
        for e in data["edges"]:
            e["rels"] = {r: set(ids) for r, ids in e["rels"].items()}
            e.setdefault("heads", {})  # graphs saved before relations kept their subject
        return cls(nx.node_link_graph(data, edges="edges"))


def rebuild(folder: Path, old: Path, session, collection_row, removed: list[int], added: list[Chunk]) -> None:
    """The EXTRAS hook: the previous version's graph, minus removed chunks, plus added ones."""
    kg = KnowledgeGraph.load(old)
    kg.remove_chunks(removed)
    extractor = EXTRACTOR.get()
    if extractor is not None and added:
        kg.add(extractor(added))
    kg.save(folder)

