# syntax=docker/dockerfile:1
#
# The agentwatch image for teams that build with Docker (or BuildKit,
# buildah, kaniko). It is the image `make image` builds without a daemon
# (cmd/imagebuild), layer for layer: the same four static binaries in
# /usr/local/bin, the same non-root user 65532, the same labels. A test
# (internal/tools/image TestDockerfile) keeps the two in step.
#
#   docker build \
#     --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg COMMIT=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(date -u -d @$(git log -1 --format=%ct) +%Y-%m-%dT%H:%M:%SZ) \
#     -t agentwatch:$(git describe --tags --always --dirty) .

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
ARG VERSION=dev
ARG COMMIT=unknown
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static (CGO_ENABLED=0), without build paths (-trimpath), stamped with
# the version and commit that `X version` prints.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/agentwatch/agentwatch/internal/platform/buildinfo.version=${VERSION} -X github.com/agentwatch/agentwatch/internal/platform/buildinfo.commit=${COMMIT}" \
      -o /out/ ./cmd/agentwatch ./cmd/detector ./cmd/ingest ./cmd/responder
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/home/nonroot /rootfs/var/lib/agentwatch /rootfs/tmp && \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /rootfs/etc/passwd && \
    printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group && \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ && \
    chown 65532:65532 /rootfs/home/nonroot /rootfs/var/lib/agentwatch && \
    chmod 0700 /rootfs/home/nonroot /rootfs/var/lib/agentwatch && chmod 1777 /rootfs/tmp

FROM scratch
ARG VERSION=dev
ARG COMMIT=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG SOURCE=https://github.com/agentwatch/agentwatch
COPY --from=build /rootfs/ /
COPY --from=build /out/ /usr/local/bin/
LABEL org.opencontainers.image.title="agentwatch" \
      org.opencontainers.image.description="Watches AI agents as they call APIs, and stops the ones that misbehave" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.created="${CREATED}"
ENV PATH=/usr/local/bin:/usr/bin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
WORKDIR /var/lib/agentwatch
ENTRYPOINT ["/usr/local/bin/agentwatch"]
