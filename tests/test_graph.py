"""Knowledge graph: persistence, consistency with ingest/replace/delete, router, retrieval, CLI."""

from __future__ import annotations

import json

from ingest.build import delete_documents, ingest_paths
from rag.store.graph import Facts, KnowledgeGraph
from rag.retrieve.graph import link, route, routed
from rag.types import Triple

DOCS = [
    {"doc_id": "film", "title": "Big Stone Gap (film)",
     "text": "Big Stone Gap is a 2014 American romantic comedy film directed by Adriana Trigiani."},
    {"doc_id": "author", "title": "Adriana Trigiani",
     "text": "Adriana Trigiani is an Italian American author. She lives in Greenwich Village, New York City."},
    {"doc_id": "village", "title": "Greenwich Village",
     "text": "Greenwich Village is a neighborhood on the west side of Lower Manhattan, New York City."},
    {"doc_id": "d1", "title": "Film director", "text": "A film director controls the artistic aspects of a film."},
    {"doc_id": "d2", "title": "Romantic comedy", "text": "A romantic comedy film is a comedy about romance."},
    {"doc_id": "d3", "title": "Comedy film", "text": "A comedy film is a film that makes the audience laugh."},
]


def _write(path, docs):
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def _ingest(service, paths, collection="kg"):
    return ingest_paths(service.settings, service.store, service.embedder(), paths, collection, progress=False)


def _graph(service, collection="kg") -> KnowledgeGraph:
    return service.indexes.get(service.store.get_collection(collection)).extras["graph"]


def _chunk_ids(service, collection="kg") -> set[int]:
    return {c for d in service.store.documents(collection) for c in _doc_chunks(service, collection, d.source)}


def _doc_chunks(service, collection, source) -> set[int]:
    from sqlalchemy import select

    from rag.store.metadata import ChunkRow, DocumentRow

    with service.store.transaction() as s:
        return set(s.scalars(select(ChunkRow.id).join(DocumentRow, ChunkRow.document_id == DocumentRow.id)
                             .where(DocumentRow.source == source)))


def test_persistence_round_trip(tmp_path):
    kg = KnowledgeGraph()
    kg.add([Facts(1, (("title", "Adriana Trigiani"), ("mention", "Greenwich Village")),
                  (Triple("Adriana Trigiani", "lives in", "Greenwich Village", 1),)),
            Facts(2, (("mention", "adriana trigiani"), ("mention", "서울특별시")),
                  (Triple("Adriana Trigiani", "co_occurs", "서울특별시", 2),))])
    kg.save(tmp_path)
    back = KnowledgeGraph.load(tmp_path)
    assert set(back.g.nodes) == set(kg.g.nodes) == {"adriana trigiani", "greenwich village", "서울특별시"}
    for n in kg.g.nodes:
        assert back.g.nodes[n]["title"] == kg.g.nodes[n]["title"]
        assert back.g.nodes[n]["mention"] == kg.g.nodes[n]["mention"]
    assert back.g.nodes["adriana trigiani"]["title"] == {1}
    assert back.g.nodes["adriana trigiani"]["mention"] == {2}  # case variant resolved to one node
    assert back.g.edges["adriana trigiani", "greenwich village"]["rels"] == {"lives in": {1}}
    # the relation keeps its subject whichever way the undirected edge is read
    assert back.g.edges["greenwich village", "adriana trigiani"]["heads"] == {"lives in": "adriana trigiani"}
    assert back.stats() == kg.stats()
    assert not (tmp_path / "graph.json.tmp").exists()
    assert KnowledgeGraph.load(tmp_path / "missing").g.number_of_nodes() == 0


def test_remove_chunks_drops_facts_exactly_when_last_support_goes():
    kg = KnowledgeGraph()
    kg.add([Facts(1, (("mention", "A"), ("mention", "B")), (Triple("A", "knows", "B", 1),)),
            Facts(2, (("mention", "A"), ("mention", "B")), (Triple("A", "knows", "B", 2),
                                                             Triple("A", "co_occurs", "B", 2)))])
    kg.remove_chunks([2])
    assert kg.g.edges["a", "b"]["rels"] == {"knows": {1}}
    assert kg.chunks_of("a") == {1}
    kg.remove_chunks([1])
    assert kg.g.number_of_nodes() == 0 and kg.g.number_of_edges() == 0


def test_ingest_builds_graph_and_delete_replace_keep_it_consistent(service, tmp_path):
    corpus = _write(tmp_path / "c.jsonl", DOCS)
    _ingest(service, [corpus])
    kg = _graph(service)
    assert kg.supporting_chunks() == _chunk_ids(service)
    film, author = _doc_chunks(service, "kg", "film"), _doc_chunks(service, "kg", "author")
    assert kg.g.nodes["big stone gap"]["title"] == film
    assert kg.g.nodes["adriana trigiani"]["title"] == author
    assert kg.g.nodes["adriana trigiani"]["mention"] == film  # the film passage names its director
    assert kg.g.has_edge("big stone gap", "adriana trigiani")
    # Greenwich Village is supported by two documents: deleting one keeps the node
    delete_documents(service.settings, service.store, "author", "kg")
    kg = _graph(service)
    assert "greenwich village" in kg and kg.chunks_of("greenwich village") == _doc_chunks(service, "kg", "village")
    assert kg.g.nodes["adriana trigiani"]["title"] == set()  # the passage about her is gone...
    assert kg.g.nodes["adriana trigiani"]["mention"] == film  # ...the film still names her
    assert not kg.g.has_edge("adriana trigiani", "greenwich village")
    assert kg.supporting_chunks() == _chunk_ids(service)
    # replacing the film's text with one that no longer names her removes her last support
    edited = dict(DOCS[0], text="Big Stone Gap is a 2014 American romantic comedy film set in Virginia.")
    _ingest(service, [_write(tmp_path / "c.jsonl", [edited] + DOCS[2:])])
    kg = _graph(service)
    assert "adriana trigiani" not in kg
    assert "virginia" in kg
    assert kg.supporting_chunks() == _chunk_ids(service)
    delete_documents(service.settings, service.store, "village", "kg")
    assert "greenwich village" not in _graph(service)


def test_graph_off_extracts_nothing(settings, tmp_path):
    from rag.pipeline import RagService

    svc = RagService(settings.model_copy(update={"graph": False}))
    _ingest(svc, [_write(tmp_path / "c.jsonl", DOCS)])
    assert _graph(svc).g.number_of_nodes() == 0
    assert svc.retriever("kg").__class__.__name__ == "HybridRetriever"


def test_router_keeps_single_hop_questions_on_hybrid(service, tmp_path):
    _ingest(service, [_write(tmp_path / "c.jsonl", DOCS)])
    kg = _graph(service)
    q = "Where does the director of the romantic comedy Big Stone Gap live?"
    links = link(q, kg)
    assert "big stone gap" in {lk.key for lk in links}
    assert route(q, links).use_graph
    assert {lk.key for lk in link("Where does the director of Big Stone Gapp live?", kg)} >= {"big stone gap"}  # fuzzy
    single = "What makes the audience laugh?"
    r = route(single, link(single, kg))
    assert not r.use_graph
    # single-hop: the hybrid head keeps its places; graph candidates may only fill ranks below it
    base = service.retriever("kg", "hybrid").retrieve(single, 5)
    routed = service.retriever("kg", "auto")
    got = routed.retrieve(single, 5)
    head = routed.head
    assert head == service.settings.top_k  # the decoder's context is exactly the hybrid one
    assert [h.chunk.id for h in got[:head]] == [h.chunk.id for h in base[:head]]
    assert f"below the first {head} hybrid passages" in routed.trace["graph"]["reason"]
    assert routed.trace["graph"]["routed"] is False  # what the reader's names check reads
    routed.head = 0
    assert [h.chunk.id for h in routed.retrieve(single, 5)] == [h.chunk.id for h in base]
    assert "hybrid ranking only" in routed.trace["graph"]["reason"]


def test_graph_expansion_reaches_the_bridge_passage(service, tmp_path):
    _ingest(service, [_write(tmp_path / "c.jsonl", DOCS)])
    q = "Where does the director of the romantic comedy Big Stone Gap live?"
    author = _doc_chunks(service, "kg", "author")
    graph = service.retriever("kg", "graph")
    hits = graph.retrieve(q, 3)
    assert author & {h.chunk.id for h in hits}
    assert graph.trace["graph"]["used"] and "Adriana Trigiani" in graph.trace["graph"]["bridges"]
    hybrid = service.retriever("kg", "hybrid").retrieve(q, 3)
    assert not author & {h.chunk.id for h in hybrid}  # the hop the graph adds
    answer = service.ask(q, "kg")
    assert answer.trace["graph"]["used"] is True and answer.trace["graph"]["routed"] is True
    assert routed(answer.trace) and not routed({})  # what the reader's names check reads


def test_cli_graph_stats_and_show(service, tmp_path, monkeypatch, capsys):
    from rag.cli import main

    _ingest(service, [_write(tmp_path / "c.jsonl", DOCS)])
    monkeypatch.setenv("RAG_DATA_DIR", str(service.settings.data_dir))
    monkeypatch.setenv("RAG_BACKEND", "fake")
    assert main(["graph", "stats", "--collection", "kg", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["nodes"] >= 6 and st["title_entities"] == 6
    assert main(["graph", "show", "adriana trigiani", "--collection", "kg", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["entity"] == "Adriana Trigiani"
    assert "Greenwich Village" in {n["entity"] for n in shown["neighbours"]}
    assert {c["source"] for c in shown["chunks"].values()} >= {"film", "author"}
    assert main(["graph", "show", "Nobody Atall", "--collection", "kg"]) == 2


def test_sample_corpus_graph_matches_chunks(sample_service):
    kg = _graph(sample_service, "default")
    assert kg.g.number_of_nodes() > 0
    assert kg.supporting_chunks() <= _chunk_ids(sample_service, "default")


def test_router_does_not_call_a_long_article_entity_centred():
    from rag.retrieve.graph import FOCUSED_PASSAGES, Link

    q = "How are decisions made in the European Union?"
    short = Link("european union", "European Union", 1.0, True, 1)
    long = Link("european union", "European Union", 1.0, True, FOCUSED_PASSAGES + 30)
    assert route(q, [short]).use_graph and "entity-centred" in route(q, [short]).reason
    assert not route(q, [long]).use_graph
