# One image for the operator (`python -m agent_operator`), the router (`agentctl router`) and the
# shards (`agentctl shard`, run by each RuntimePool's StatefulSet).
# NOT built or run in this repository's CI (no container engine there); see docs/kubernetes.md.
# Build: docker build -t ghcr.io/agent-runtime/agent-runtime:0.1.0 .

# ---- build: the Rust extension needs cargo + maturin -----------------------------------------------
FROM python:3.11-slim-bookworm AS build
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
RUN pip install --no-cache-dir "maturin>=1.16,<2" \
    && maturin build --release --out /wheels \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ./operator

# ---- run ------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin agent
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
ENV PYTHONUNBUFFERED=1
EXPOSE 8080 8470
# The chart and the operator's StatefulSets set command/args; this default shows the CLI.
CMD ["agentctl", "--help"]
