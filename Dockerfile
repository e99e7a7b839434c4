# syntax=docker/dockerfile:1
# checkout in a small image: the `checkout` binary on distroless (glibc, CA roots, no shell),
# running as a non-root user, SQLite data in a volume unless DATABASE_URL says otherwise.
# Build: docker build -t checkout .   (README, "Container"; CI lints this file with hadolint
# but has no container engine, so it does not build it.)

# Builder: the full Rust toolchain. protoc comes vendored with the build (protoc-bin-vendored),
# SQLite is compiled in (libsqlite3-sys "bundled"), TLS is rustls: no system packages needed.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Only what the binary is built from; tests/, bench/ and the docs stay out of the context.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY migrations migrations
COPY src src
# BuildKit cache mounts keep downloaded crates and compiled dependencies between builds, so a
# source change recompiles only this crate. The target dir is a cache, so the binary is
# copied out of it; /out/data becomes the volume, owned by the runtime's non-root user.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin checkout \
    && install -D -m 0755 target/release/checkout /out/checkout \
    && install -d -m 0700 /out/data

# Runtime: distroless "cc" has the glibc and libgcc the binary links; its nonroot user is
# 65532. No shell, so HEALTHCHECK and commands use the exec form.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/checkout /usr/local/bin/checkout
COPY --from=build --chown=65532:65532 /out/data /var/lib/checkout
# Container defaults: listen on every interface of the container (publish the port to
# choose who reaches it); SQLite and its key file (checkout.db.key) in the volume. The
# health probe asks the listener from inside; change CHECKOUT_HEALTH_ADDR with the port.
# PATH is spelled out because ENTRYPOINT, HEALTHCHECK, compose and `docker exec` all call
# plain `checkout`.
ENV PATH=/usr/local/bin:/usr/bin:/bin \
    CHECKOUT_LISTEN_ADDR=0.0.0.0:50051 \
    CHECKOUT_HEALTH_ADDR=127.0.0.1:50051 \
    DATABASE_URL=sqlite:///var/lib/checkout/checkout.db
VOLUME ["/var/lib/checkout"]
EXPOSE 50051
# Numeric, so orchestrators can check runAsNonRoot without reading /etc/passwd.
USER 65532:65532
# grpc.health.v1.Health/Check through the binary itself (`checkout health`): exit 0 only
# when SERVING (no grpc_health_probe binary to ship).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["checkout", "health", "--timeout-ms", "4000"]
ENTRYPOINT ["checkout"]
CMD ["serve"]
