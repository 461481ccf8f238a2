// Its own module (standard library only), so that it runs before
// third_party/kubernetes exists: the main module cannot load without it.
module github.com/ballast-k8s/ballast/hack/kubernetes/dirhash

go 1.26.0
