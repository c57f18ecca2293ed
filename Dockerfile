# syntax=docker/dockerfile:1
#
# The intentgate image: the `intentgate` binary and its WebAssembly plugins, run as a non-root
# user. Build from the repository root (BuildKit, the default builder since Docker 23):
#
#   docker build -t intentgate:0.1.0 .
#
# Run it with a config mounted at /etc/intentgate (see docs/operations.md):
#
#   docker run --rm --read-only -p 8443:8443 \
#     -v "$PWD/deploy:/etc/intentgate:ro" intentgate:0.1.0
#
# What is where in the image:
#
#   /usr/local/bin/intentgate                          the binary (ENTRYPOINT)
#   /usr/lib/intentgate/plugins/intentgate_oidc.wasm   identity: OIDC JWTs
#   /usr/lib/intentgate/plugins/intentgate_aws_iam.wasm identity: AWS IAM (signed GetCallerIdentity)
#   /usr/lib/intentgate/plugins/intentgate_http.wasm   connector: HTTP
#   /usr/lib/intentgate/plugins/intentgate_spanner.wasm connector: Cloud Spanner gRPC
#   /etc/intentgate/intentgate.toml                    the config `run` reads by default: mount it,
#                                                      or COPY it in an image FROM this one
#                                                      (examples/ecs-sidecar/Dockerfile)
#
# scripts/check-dockerfile runs the build commands below on the local tree and checks this layout
# and the example images' configs against it (no container engine was available where this file
# was written; docs/operations.md says what was and was not verified).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- build ---------------------------------------------------------------------------------------
# The official Rust image at the project's toolchain (Cargo.toml: rust-version = "1.95"), on the
# same Debian release as the runtime stage, so the binary links against the same glibc.
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
RUN rustup target add wasm32-wasip2 wasm32-unknown-unknown
WORKDIR /src
# Only what the two cargo builds read, so editing docs or examples does not invalidate this layer.
# (Not the usual "manifests first, dummy sources" trick: there are two workspaces whose member
# lists change, and a member missing from such a list breaks the build. The cache mounts below
# keep the registry and both target directories between builds instead.)
COPY Cargo.toml Cargo.lock ./
COPY host host
COPY plugins plugins
COPY wit wit
COPY policies policies
COPY tests tests
COPY bench bench
COPY scripts/build-plugins scripts/build-plugins
# Release builds of the host (symbols stripped: a release binary measured 55 MB, 42 MB stripped)
# and of the plugins (scripts/build-plugins always builds them in release), then the runtime
# layout under /out. The target directories are cache mounts, so the outputs are copied out in
# the same step.
RUN --mount=type=cache,id=intentgate-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=intentgate-target,target=/src/target \
    --mount=type=cache,id=intentgate-plugins-target,target=/src/plugins/target \
    set -eux; \
    CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --release --locked -p intentgate --bin intentgate; \
    scripts/build-plugins; \
    install -D -m 0755 target/release/intentgate /out/usr/local/bin/intentgate; \
    for plugin in aws_iam http oidc spanner; do \
        install -D -m 0644 "plugins/target/components/intentgate_$plugin.wasm" \
            "/out/usr/lib/intentgate/plugins/intentgate_$plugin.wasm"; \
    done

# ---- runtime -------------------------------------------------------------------------------------
# Debian slim rather than distroless (gcr.io/distroless/cc-debian12:nonroot, which is smaller and
# has no shell):
#  - ECS runs container health checks *inside* the container (task definition `healthCheck`), and
#    the ECS examples' app containers start only once intentgate is HEALTHY. intentgate has no
#    built-in probe command, so the image needs an HTTP client: curl, for GET /readyz.
#  - Images FROM this one add a private CA to the system trust store (update-ca-certificates;
#    examples/ecs-sidecar/Dockerfile), which rustls reads through rustls-native-certs.
#  - The gateway example's tls-init container writes the TLS key from Secrets Manager with /bin/sh.
# The cost is a shell and apt in the image; the task definitions run it as uid 65532 with a
# read-only root filesystem and every capability dropped.
FROM debian:${DEBIAN_RELEASE}-slim
LABEL org.opencontainers.image.title="intentgate" \
      org.opencontainers.image.description="Identity-aware proxy with WebAssembly plugins and Cedar policies" \
      org.opencontainers.image.licenses="Apache-2.0"
# ca-certificates: STS, Google and OIDC issuers over TLS. curl: the health check.
# uid/gid 65532: the same numeric ids as distroless' `nonroot`, which the task definitions name.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 65532 intentgate; \
    useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin intentgate; \
    mkdir -p /etc/intentgate
COPY --from=build /out/ /
USER 65532:65532
# Conventions of the examples, not fixed by the image (the config decides every port):
# 8443 = the gateway's TLS gRPC listener (examples/ecs-gateway), 9011 = the admin endpoints
# (/healthz, /readyz, /metrics), which the examples bind to 127.0.0.1 inside the task.
EXPOSE 8443 9011
# Docker and Compose use this; ECS and Kubernetes ignore it and run their own probes. Point it at
# the config's [admin] bind (e.g. -e INTENTGATE_HEALTHCHECK_URL=http://127.0.0.1:18444/readyz),
# or run with --no-healthcheck when the config has no [admin] section.
ENV INTENTGATE_HEALTHCHECK_URL=http://127.0.0.1:9011/readyz
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD curl -fsS -o /dev/null "$INTENTGATE_HEALTHCHECK_URL" || exit 1
ENTRYPOINT ["intentgate"]
CMD ["run", "--config", "/etc/intentgate/intentgate.toml"]
