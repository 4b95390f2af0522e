# syntax=docker/dockerfile:1
# Multi-stage build: compile the release binary, then run it from a small
# distroless image as a non-root user. The example config and protos are
# baked in at /etc/protogate; mount your own gateway.yaml (and protos) there.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cached across builds (BuildKit, buildah, podman): the crate registry and
# the target directory, so a source edit recompiles only what changed. The
# binary is copied out of the cache. Symbols are kept for backtraces; the
# line tables the benchmarks profile with are not.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    cargo build --release --locked -p protogate --bin protogate \
    && cp target/release/protogate /usr/local/bin/protogate \
    && mkdir -p /descriptor-cache

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/protogate /usr/local/bin/protogate
COPY gateway.yaml /etc/protogate/gateway.yaml
COPY protos /etc/protogate/protos
# The example config verifies development tokens with this public key.
COPY examples/keys/dev-signing.pub.pem /etc/protogate/examples/keys/dev-signing.pub.pem
# The last descriptors of reflection backends, so a restart while one is
# down still serves its routes; a volume, as the root filesystem may be read-only.
COPY --from=build --chown=65532:65532 /descriptor-cache /var/cache/protogate
ENV PROTOGATE_DESCRIPTOR_CACHE=/var/cache/protogate
VOLUME /var/cache/protogate
WORKDIR /etc/protogate
EXPOSE 8080
# Numeric, so Kubernetes' runAsNonRoot can check it (distroless "nonroot").
USER 65532:65532
# No shell or curl in the image: the binary checks itself, within the
# health check's own timeout. (OCI-format builds drop HEALTHCHECK: build
# with `podman build --format docker` to keep it.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/protogate", "probe", "--timeout", "2s", "--url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/protogate"]
CMD ["serve", "--config", "/etc/protogate/gateway.yaml", "--listen", "0.0.0.0:8080"]
