"""Streamlit front end: `rag ui` runs `streamlit run ui/app.py`.

Talks to the REST API over HTTP only (ui/client.py); it never imports the core library or
loads a model, so it can run on another machine than the API. Where the API is and which
key to send come from the environment (RAG_API_URL, RAG_API_KEY, set by `rag ui`) and can be
changed in the sidebar."""

from __future__ import annotations

import os

import streamlit as st

from ui.client import Api, ApiError

st.set_page_config(page_title="rag-offline", page_icon=":material/menu_book:", layout="wide")


def sidebar() -> None:
    st.sidebar.title("rag-offline")
    url = st.sidebar.text_input("API URL", os.environ.get("RAG_API_URL", "http://127.0.0.1:8000"))
    key = st.sidebar.text_input("API key", os.environ.get("RAG_API_KEY", ""), type="password")
    api = Api(url.rstrip("/"), key)
    st.session_state["api"] = api
    try:
        info = api.get("/v1/collections")
        names = [c["name"] for c in info["collections"]]
        st.session_state["admin"] = info.get("admin", False)
        st.session_state["rights"] = {c["name"]: c["right"] for c in info["collections"]}
    except ApiError as e:
        st.sidebar.error(f"API: {e.detail}")
        names = []
    except Exception as e:  # noqa: BLE001 - an unreachable API is shown, not raised
        st.sidebar.error(f"cannot reach the API at {url}: {type(e).__name__}")
        names = []
    st.session_state["collections"] = names
    chosen = None
    if names:
        default = names.index("default") if "default" in names else 0
        chosen = st.sidebar.selectbox("Collection", names, index=default)
    new = st.sidebar.text_input("New collection", placeholder="a name, then upload documents into it",
                                help="Letters, digits, '_', '-' or '.'; it exists once it holds a document.")
    st.session_state["collection"] = new.strip() or chosen or "default"


sidebar()
here = os.path.dirname(os.path.abspath(__file__))
pages = [st.Page(os.path.join(here, "views", f"{name}.py"), title=title, icon=icon, url_path=name, default=(name == "ask"))
         for name, title, icon in [("ask", "Ask", ":material/chat:"), ("documents", "Documents", ":material/description:"),
                                   ("graph", "Graph", ":material/hub:"), ("evaluation", "Evaluation", ":material/analytics:")]]
st.navigation(pages).run()
