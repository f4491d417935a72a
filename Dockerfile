# syntax=docker/dockerfile:1
#
# Portico's image. Built from this repository in the official Rust image (Pingora's
# `boringssl` feature builds BoringSSL with cmake and generates its bindings with libclang;
# etcd-client needs protoc), run from a slim Debian holding the binary, CA certificates and
# curl (for container health checks) only.
#
#   docker build -t portico .
#   docker run -p 8443:8443 portico          # conf/portico.yaml, the default config
#
# docker-compose.yml runs two of these behind HAProxy with conf/ha/portico.yaml.

FROM rust:1-bookworm AS build
# protoc and the protobuf well-known types: etcd-client (config from etcd) compiles etcd's API
# definitions at build time. cmake, clang and libclang-dev: BoringSSL and its bindings.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang libclang-dev protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and target/ are cache mounts: a rebuild after a source change is incremental.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin portico \
 && cp target/release/portico /usr/local/bin/portico

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/portico --create-home --shell /usr/sbin/nologin portico \
 && mkdir -p /etc/portico/certs /run/portico \
 && chown portico:portico /etc/portico/certs /run/portico
COPY --from=build /usr/local/bin/portico /usr/local/bin/portico
# The default config; it generates a self-signed certificate into /etc/portico/certs.
COPY conf/portico.yaml /etc/portico/portico.yaml
USER portico
WORKDIR /var/lib/portico
EXPOSE 8443 8080 9901
# SIGTERM is Portico's graceful shutdown (not ready at once, serve grace_period, drain):
# give the container at least grace_period + shutdown_timeout before it is killed.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/portico"]
CMD ["-c", "/etc/portico/portico.yaml"]
