# syntax=docker/dockerfile:1
# One Dockerfile, one target per service:
#   docker build --target producer -t coc-producer .
#   docker build --target consumer -t coc-consumer .
# Dependencies are compiled in their own layer (cargo-chef), so a code change rebuilds
# only the workspace's own crates.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.71
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin producer --bin consumer

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates for amqps:// and postgres TLS; curl for the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /app app
WORKDIR /app
ENV LOG_FORMAT=json
USER app

FROM runtime AS producer
COPY --from=builder /src/target/release/producer /usr/local/bin/producer
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/producer"]

FROM runtime AS consumer
COPY --from=builder /src/target/release/consumer /usr/local/bin/consumer
# The SQLite store lives here; mount a volume on it.
RUN mkdir -p /app/data
VOLUME ["/app/data"]
EXPOSE 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s CMD curl -fsS http://127.0.0.1:8081/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/consumer"]
