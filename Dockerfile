# syntax=docker/dockerfile:1
# Build: docker build -t floatip .
# The final image holds the floatip binary and nothing else, and runs as a non-root user.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# aws-lc-sys (the TLS provider shared by kube and the AWS SDK) builds C code.
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src src
# Workspace members live under tests/; cargo needs their manifests even to build one binary.
COPY tests tests
RUN cargo build --release --locked --bin floatip

# distroless/cc: glibc and CA certificates, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/floatip /usr/local/bin/floatip
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/floatip"]
