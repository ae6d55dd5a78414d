def test_langchain_retriever_returns_documents_with_provenance(sample_service):
    from rag.retrieve.langchain import CollectionRetriever

    r = CollectionRetriever(service=sample_service, collection="default", k=3)
    docs = r.invoke("How many steps lead to the lantern room?")
    assert 0 < len(docs) <= 3
    top = docs[0]
    assert "142 steps" in top.page_content and top.metadata["source"].endswith("lighthouse.txt")
    assert top.metadata["end"] - top.metadata["start"] == len(top.page_content)
