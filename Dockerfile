# Multi-stage build: compile the release binary, then run it from a small
# distroless image as a non-root user. The example config and protos are
# baked in at /etc/protogate; mount your own gateway.yaml (and protos) there.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p protogate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/protogate /usr/local/bin/protogate
COPY gateway.yaml /etc/protogate/gateway.yaml
COPY protos /etc/protogate/protos
# The example config verifies development tokens with this public key.
COPY examples/keys/dev-signing.pub.pem /etc/protogate/examples/keys/dev-signing.pub.pem
WORKDIR /etc/protogate
EXPOSE 8080
USER nonroot
# No shell or curl in the image: the binary checks itself.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/protogate", "probe", "--url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/protogate"]
CMD ["serve", "--config", "/etc/protogate/gateway.yaml", "--listen", "0.0.0.0:8080"]
