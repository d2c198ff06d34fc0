# syntax=docker/dockerfile:1
# The floatip image: one static binary, the CA certificates it trusts, nothing else; user 65532.
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#       --build-arg FLOATIP_COMMIT=$(git rev-parse --short=12 HEAD) -t IMAGE --push .
#
# The build stage runs on the platform it builds for (natively, or under QEMU on a builder of
# the other architecture) and compiles for that architecture's musl target, so both platforms
# take the same packages and commands. Cross compiling from $BUILDPLATFORM would be faster under
# emulation but needs a second, multiarch C toolchain for aws-lc-sys; a native arm64 builder
# node (README, "Building the image") gives the speed without it.

FROM docker.io/library/rust:1.95-slim-bookworm AS build
ARG TARGETARCH
# musl-tools: musl-gcc, which compiles aws-lc-sys (the TLS provider of kube and the AWS SDK)
# against musl. No cmake: on both musl targets aws-lc-sys builds with the cc crate and the
# bindings it ships. ca-certificates: the bundle the final stage copies.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN case "$TARGETARCH" in \
        amd64) echo x86_64-unknown-linux-musl ;; \
        arm64) echo aarch64-unknown-linux-musl ;; \
        *) echo "TARGETARCH '$TARGETARCH': floatip images are built for amd64 and arm64" >&2; exit 1 ;; \
    esac > /rust-target \
 && rustup target add "$(cat /rust-target)"

WORKDIR /src
# The context is what .dockerignore lets through: the manifests (the lab's too, since cargo
# reads every workspace member's), the sources, the bench the manifest declares, build.rs.
COPY . .
# Seen by cargo as an environment variable: build.rs records it for floatip_build_info.
ARG FLOATIP_COMMIT
# Dependencies are cached with BuildKit cache mounts rather than a layer built from stub
# sources: stubs would have to mirror the workspace (a path member that depends on floatip, a
# declared bench, a build script), and cargo compares file times, so a stub built after the
# real sources were written can pass for them. The mounts keep the registry and the target
# directory between builds on the same builder (one target directory per architecture: build
# scripts and proc macros are host code). musl targets link statically by default.
RUN --mount=type=cache,id=floatip-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=floatip-target-${TARGETARCH},target=/src/target,sharing=locked \
    cargo build --release --locked -p floatip --bin floatip --target "$(cat /rust-target)" \
 && cp "target/$(cat /rust-target)/release/floatip" /floatip

FROM scratch
# The AWS SDK reads its trusted roots from this file; the Kubernetes client trusts the
# cluster's own CA from the ServiceAccount token volume.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /floatip /usr/local/bin/floatip
# Numeric, as scratch has no /etc/passwd. The agent's pod spec runs it as root with NET_ADMIN;
# the image itself grants nothing.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/floatip"]
