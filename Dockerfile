# One image for the operator (`python -m agent_operator`), the router (`agentctl router`) and the
# shards (`agentctl shard`, run by each RuntimePool's StatefulSet).
# Build: docker build -t ghcr.io/agent-runtime/agent-runtime:0.1.0 .
#        docker build --build-arg BASE=<your python 3.11+ bookworm-based image> ...
# Not run in this repository (no Docker here): `make image` builds the same image offline, from a
# debootstrapped base and host-built wheels (scripts/image/, docs/cluster.md), and that one runs on
# the real cluster of `make cluster`.
ARG BASE=python:3.11-slim-bookworm

# ---- build: the Rust extension needs cargo + maturin -----------------------------------------------
FROM ${BASE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY native ./native
COPY agent_runtime ./agent_runtime
COPY mock_providers ./mock_providers
COPY operator ./operator
COPY scripts/image/requirements.txt ./requirements.txt
RUN pip install --no-cache-dir "maturin>=1.16,<2" \
    && maturin build --release --out /wheels \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ./operator \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels -r requirements.txt

# ---- run ------------------------------------------------------------------------------------------
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin agent
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels agent-runtime agent-operator
USER 10001
WORKDIR /home/agent
# the chart runs it with a read-only root filesystem: bytecode is compiled at install, nothing is
# written at run time but /tmp
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
EXPOSE 8080 8470
# The chart and the operator's StatefulSets set command/args; this default shows the CLI.
CMD ["agentctl", "--help"]
