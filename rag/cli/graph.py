"""`rag graph stats` and `rag graph show ENTITY`: look inside a collection's knowledge graph.

`show` resolves the name like retrieval does (exact key, then fuzzy) and lists the entity's
neighbours with their relations and the chunks that support each one."""

from __future__ import annotations

import json


def register(sub) -> None:
    g = sub.add_parser("graph", help="inspect the knowledge graph of a collection")
    gs = g.add_subparsers(dest="graph_command", required=True, metavar="ACTION")
    a = gs.add_parser("stats", help="node, edge and relation counts; the best-connected entities")
    a.add_argument("--collection", default="default")
    a.add_argument("--json", action="store_true")
    a.set_defaults(fn=cmd_stats)
    a = gs.add_parser("show", help="an entity's neighbours with their supporting chunks")
    a.add_argument("entity")
    a.add_argument("--collection", default="default")
    a.add_argument("--limit", type=int, default=20, help="neighbours to list")
    a.add_argument("--json", action="store_true")
    a.set_defaults(fn=cmd_show)


def _graph(collection: str):
    from rag.config import Settings
    from rag.pipeline import RagService

    svc = RagService(Settings())
    return svc, svc.indexes.get(svc.store.get_collection(collection)).extras["graph"]


def cmd_stats(args) -> int:
    _svc, kg = _graph(args.collection)
    st = kg.stats()
    if args.json:
        print(json.dumps(st, ensure_ascii=False, indent=1))
        return 0
    print(f"collection {args.collection}: {st['nodes']} entities ({st['title_entities']} with passages "
          f"of their own), {st['edges']} relations, from {st['supporting_chunks']} chunks")
    print("relations: " + ", ".join(f"{r} {n}" for r, n in st["top_relations"].items()))
    print("best connected: " + ", ".join(f"{n} ({d})" for n, d in st["top_degree"]))
    return 0


def cmd_show(args) -> int:
    from rag.errors import NotFoundError
    from rag.retrieve.graph import fuzzy_match
    from rag.entities import entity_key

    svc, kg = _graph(args.collection)
    key = kg.find(args.entity) or (fuzzy_match(entity_key(args.entity), kg, 80.0) or (None,))[0]
    if key is None:
        raise NotFoundError(f"no entity like {args.entity!r} in collection {args.collection!r}; "
                            f"see the best-connected ones with: rag graph stats --collection {args.collection}")
    node = kg.g.nodes[key]
    nbrs = kg.neighbours(key)[:args.limit]
    chunk_ids = sorted(node["title"] | node["mention"] | {c for _m, rels in nbrs for ids in rels.values() for c in ids})
    chunks = svc.store.chunks(args.collection, chunk_ids)
    out = {"entity": node["name"], "key": key, "about": sorted(node["title"]), "mentioned_in": sorted(node["mention"]),
           "neighbours": [{"entity": kg.g.nodes[m]["name"],
                           "relations": {r: sorted(ids) for r, ids in rels.items()}} for m, rels in nbrs],
           "chunks": {c: {"source": ch.source, "title": ch.title, "text": ch.text[:160]} for c, ch in chunks.items()}}
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=1))
        return 0
    print(f"{node['name']}  (about: chunks {out['about'] or '-'}; mentioned in {len(out['mentioned_in'])} chunks)")
    for n in out["neighbours"]:
        rels = "; ".join(f"{r} [{', '.join(map(str, ids))}]" for r, ids in n["relations"].items())
        print(f"  - {n['entity']}: {rels}")
    print("supporting chunks:")
    for c, ch in out["chunks"].items():
        print(f"  [{c}] {ch['source']} ({ch['title']}): {ch['text']!r}")
    return 0
