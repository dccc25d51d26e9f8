# Multi-stage build of a static, non-root cx-operator image.
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin cx-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/cx-operator /cx-operator
USER 65532:65532
EXPOSE 8080 8443
ENTRYPOINT ["/cx-operator"]
CMD ["run", "--config", "/etc/cx-operator/config.yaml", "--log-format", "json"]
