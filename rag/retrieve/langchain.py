"""A LangChain retriever over a collection, so LangChain users can plug our index in.

LangChain stays at the edge: its Document type is produced here and nowhere else."""

from __future__ import annotations

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict


class CollectionRetriever(BaseRetriever):
    """`CollectionRetriever(service=RagService(Settings()), collection="team", k=4)`: returns the
    full pipeline's ranking as LangChain Documents with source, chunk id and offsets in metadata."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    service: object
    collection: str = "default"
    k: int = 4

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[LCDocument]:
        hits = self.service.rank(self.service.check_question(query), self.collection, self.k)
        return [LCDocument(page_content=h.chunk.text,
                           metadata={"source": h.chunk.source, "title": h.chunk.title, "chunk_id": h.chunk.id,
                                     "start": h.chunk.start, "end": h.chunk.end, "score": h.score})
                for h in hits]
