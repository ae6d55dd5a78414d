"""Ingestion: load files, split them into chunks, embed and index them, record them in SQL."""
