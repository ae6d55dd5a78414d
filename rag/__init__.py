"""Offline retrieval-augmented question answering: the core library.

Importing this package is cheap: no torch, no model loads. Heavy pieces load lazily
the first time they are used (see rag.models.weights).
"""

__version__ = "0.1.0"
