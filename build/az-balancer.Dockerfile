# The az-balancer sidecar of cluster-autoscaler. Same binary as `make az-balancer`.
FROM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
# go.mod replaces k8s.io/kubernetes with the patched copy (docs/queue-fix.md).
COPY hack/kubernetes hack/kubernetes
RUN hack/kubernetes/generate.sh && go mod download
COPY . .
RUN make az-balancer

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/az-balancer /usr/local/bin/az-balancer
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/az-balancer"]
