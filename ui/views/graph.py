"""Graph page: an entity's neighbourhood in the collection's knowledge graph, drawn as a
network (Graphviz, rendered in the browser: no binary needed). Says so plainly when the API
has no graph endpoint or the collection has no graph yet."""

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
    st.info(f"The graph of **{collection}** is empty: entities are extracted at ingest (RAG_GRAPH=on).")
    st.stop()

c1, c2, c3 = st.columns(3)
c1.metric("entities", stats["nodes"])
c2.metric("relations", stats["edges"])
c3.metric("supporting chunks", stats.get("supporting_chunks", 0))
top = [name for name, _deg in stats.get("top_degree", [])]
left, right = st.columns([2, 1])
entity = left.text_input("Entity", top[0] if top else "")
hops = right.slider("Hops", 1, 2, 1)
if top:
    st.caption("best connected: " + ", ".join(top))

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
        label = ", ".join(sorted(e["relations"]))[:40]
        lines.append(f'{json.dumps(e["source"])} -- {json.dumps(e["target"])} [label={json.dumps(label)}, fontsize=9];')
    lines.append("}")
    st.graphviz_chart("\n".join(lines), width="stretch")
    with st.expander("Edges and their supporting chunks"):
        names = {n["id"]: n["name"] for n in g["nodes"]}
        st.dataframe([{"from": names[e["source"]], "to": names[e["target"]], "relation": r, "chunks": ids}
                      for e in g["edges"] for r, ids in e["relations"].items()], hide_index=True, width="stretch")
