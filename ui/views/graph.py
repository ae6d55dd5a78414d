"""Graph page: an entity's neighbourhood in the collection's knowledge graph, drawn as a
network (Graphviz, rendered in the browser: no binary needed), and its relations in words with
the documents that state them. Says so plainly when the collection has no graph yet."""

from __future__ import annotations

import json

import streamlit as st

from ui.client import ApiError

api = st.session_state["api"]
collection = st.session_state["collection"]

st.title("Knowledge graph")
try:
    stats = api.get(f"/v1/collections/{collection}/graph")["stats"]
except ApiError as e:
    if e.status in (404, 405, 501):
        st.info(f"No knowledge graph for **{collection}**: {e.detail}")
    else:
        st.error(e.detail)
    st.stop()

if not stats.get("nodes"):
    st.info(f"The graph of **{collection}** is empty: people, places and things are found in the documents "
            "when they are added.")
    st.stop()

# Relations in words: "mentions" joins a document's subject to what it names; "co_occurs" two
# names in one sentence with no verb between them.
WORDS = {"mentions": "mentions", "co_occurs": "appears with"}


def words(relation: str) -> str:
    return WORDS.get(relation, relation)


c1, c2, c3 = st.columns(3)
c1.metric("people, places and things", stats["nodes"])
c2.metric("relations between them", stats["edges"])
c3.metric("passages they come from", stats.get("supporting_chunks", 0))
top = [name for name, _deg in stats.get("top_degree", [])]
left, right = st.columns([2, 1])
entity = left.text_input("Entity", top[0] if top else "", help="a name from the documents, e.g. a person or a place")
hops = right.slider("Steps away", 1, 2, 1)
if top:
    st.caption("most connected: " + ", ".join(top))

if entity:
    try:
        g = api.get(f"/v1/collections/{collection}/graph", entity=entity, hops=hops, limit=40)
    except ApiError as e:
        st.warning(e.detail)
        st.stop()
    lines = ["graph G {", 'graph [overlap=false, splines=true]; node [shape=ellipse, style=filled, fontname="sans"];']
    for n in g["nodes"]:
        colour = "#f4a261" if n["hop"] == 0 else ("#a8dadc" if n["hop"] == 1 else "#e9ecef")
        lines.append(f'{json.dumps(n["id"])} [label={json.dumps(n["name"])}, fillcolor="{colour}"];')
    for e in g["edges"]:
        # a stated relation names the edge; "mentions" / "appears with" only when nothing more is known
        stated = sorted(r for r in e["relations"] if r not in WORDS) or sorted(words(r) for r in e["relations"])
        lines.append(f'{json.dumps(e["source"])} -- {json.dumps(e["target"])} '
                     f'[label={json.dumps(", ".join(stated)[:40])}, fontsize=9];')
    lines.append("}")
    st.graphviz_chart("\n".join(lines), width="stretch")
    st.subheader("Relations and where they are stated")
    names = {n["id"]: n["name"] for n in g["nodes"]}
    docs = g.get("documents", {})

    def where(ids: list[int]) -> str:
        found = {docs[str(i)]["title"] or docs[str(i)]["source"] for i in ids if str(i) in docs}
        return ", ".join(sorted(found))

    def ends(e: dict, r: str) -> tuple[str, str]:
        """(subject, object) of relation r on edge e: "The Harbor Point Lighthouse designed by Margaret Ellison"."""
        head = e.get("subjects", {}).get(r, e["source"])
        return (head, e["target"] if head == e["source"] else e["source"])

    rows = [{"from": names[ends(e, r)[0]], "relation": words(r), "to": names[ends(e, r)[1]], "stated in": where(ids)}
            for e in g["edges"] for r, ids in e["relations"].items()]
    rows.sort(key=lambda row: (row["relation"] in WORDS.values(), row["from"], row["to"]))
    st.table(rows)  # a plain table: a few dozen rows, readable and searchable on the page
