# The Ballast scheduler: kube-scheduler v1.37.2 with Ballast's plugins.
# Same binary as `make scheduler` (same Makefile target, static, trimmed).
FROM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
# go.mod replaces k8s.io/kubernetes with the patched copy (docs/queue-fix.md).
COPY hack/kubernetes hack/kubernetes
RUN hack/kubernetes/generate.sh && go mod download
COPY . .
RUN make scheduler

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/scheduler /usr/local/bin/kube-scheduler
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kube-scheduler"]
