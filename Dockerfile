# Build: one release build of the whole stack (aws-sdk-iam dominates the build time).
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crds ./crds
RUN cargo build --release --locked --bin irsa-operator && strip target/release/irsa-operator

# Run: distroless with CA certificates for the AWS endpoints, non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/irsa-operator /usr/local/bin/irsa-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/irsa-operator"]
CMD ["run"]
