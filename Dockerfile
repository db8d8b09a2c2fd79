# The same image scripts/image builds without Docker: a static (musl) binary, CA certificates
# for the AWS endpoints, a non-root user, nothing else. scripts/check-dockerfile checks that
# the files copied below are enough to build the crate.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake musl-tools ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY benches ./benches
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin irsa-operator \
 && strip target/x86_64-unknown-linux-musl/release/irsa-operator

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/irsa-operator /usr/local/bin/irsa-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/irsa-operator"]
CMD ["run"]
