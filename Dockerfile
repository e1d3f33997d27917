# One image, three roles: ROLE=probe | collect | all-in-one (default).
# Static binary (CGO_ENABLED=0) on an empty base; multi-architecture:
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7,linux/arm/v6 -t mission .
# Live capture needs CAP_NET_RAW (and CAP_NET_ADMIN for --promiscuous), not
# --privileged. The process starts as root only to get them: probe and
# all-in-one open the capture, then switch to the unprivileged user mission
# (RUN_USER, uid 10001) and drop every capability before the first packet.
# collect needs no privilege: run it as mission (docker run --user mission).

FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
ARG TARGETOS=linux
ARG TARGETARCH
ARG TARGETVARIANT
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN GOARM="${TARGETVARIANT#v}" CGO_ENABLED=0 GOOS="$TARGETOS" GOARCH="$TARGETARCH" \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/mission . \
 && mkdir -p /out/data /out/etc \
 && chmod 0700 /out/data \
 && printf 'root:x:0:0:root:/:/sbin/nologin\nmission:x:10001:10001:mission:/data:/sbin/nologin\n' > /out/etc/passwd \
 && printf 'root:x:0:\nmission:x:10001:\n' > /out/etc/group

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/etc/passwd /out/etc/group /etc/
COPY --from=build /out/mission /mission
COPY --from=build --chown=10001:10001 /out/data /data
ENV ROLE=all-in-one \
    DATA_DIR=/data \
    RUN_USER=mission \
    LOG_FORMAT=json
VOLUME /data
# IPFIX over UDP and TCP (collect), IPFIX over TLS, metrics when enabled.
EXPOSE 2055/udp 2055/tcp 4740/tcp
ENTRYPOINT ["/mission"]
