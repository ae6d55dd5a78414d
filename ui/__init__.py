"""Streamlit front end: talks to the REST API over HTTP only (see ui/client.py)."""
