# One Dockerfile, one target per service:
#   docker build --target producer -t coc-producer .
#   docker build --target consumer -t coc-consumer .
# Stages: chef (toolchain + cargo-chef) -> planner (dependency recipe) -> builder (dependencies
# compiled in their own cached layer, then the workspace) -> a small Debian runtime per service.
# A code change rebuilds only the workspace's own crates; Cargo.lock changes rebuild the rest.
#
# Build arguments for the OCI labels (deploy/azure/push-images.sh sets them):
#   VERSION (image version), REVISION (git commit), CREATED (RFC 3339 build time),
#   SOURCE_URL (the repository's URL).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --package producer --package consumer --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --package producer --package consumer \
 && install -D --mode 0755 target/release/producer target/release/consumer --target-directory /out

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE_URL=""
LABEL org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="docker.io/library/debian:${DEBIAN_RELEASE}-slim"
# CA certificates for amqps:// (rustls reads the system store), taken from the build image so
# that the runtime image needs no apt: no package manager run, nothing else installed.
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    LOG_FORMAT=json
# The health check: an HTTP probe in plain bash, so no curl in the image.
COPY --chmod=0755 deploy/docker/http-probe /usr/local/bin/http-probe
# A fixed, numeric non-root user, so orchestrators can check runAsNonRoot without a lookup.
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin app \
 && install -d --owner 10001 --group 10001 --mode 0750 /app /app/data
WORKDIR /app
USER 10001:10001

FROM runtime AS producer
LABEL org.opencontainers.image.title="change-of-circumstances producer" \
      org.opencontainers.image.description="HTTP API that accepts change-of-address requests and publishes them to RabbitMQ with publisher confirms."
COPY --from=builder /out/producer /usr/local/bin/producer
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/http-probe", "/healthz", "8080"]
ENTRYPOINT ["/usr/local/bin/producer"]

FROM runtime AS consumer
LABEL org.opencontainers.image.title="change-of-circumstances consumer" \
      org.opencontainers.image.description="Consumes address.changed events from a RabbitMQ queue and applies each exactly once to its store (SQLite or PostgreSQL)."
COPY --from=builder /out/consumer /usr/local/bin/consumer
# The default SQLite store (sqlite://data/<QUEUE>.db) lives here: mount a volume on it.
VOLUME ["/app/data"]
EXPOSE 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/http-probe", "/healthz", "8081"]
ENTRYPOINT ["/usr/local/bin/consumer"]
