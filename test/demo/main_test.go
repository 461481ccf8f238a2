// Package demo replays Ballast's two incidents on an embedded control plane
// (etcd + kube-apiserver v1.37.2 in process, AWS emulated on loopback) and
// prints what happened with and without Ballast. `make demo` runs it; it is
// also part of `make test`, where its assertions guard the numbers it prints.
package demo

import (
	"testing"

	"k8s.io/kubernetes/test/integration/framework"
)

func TestMain(m *testing.M) {
	framework.EtcdMain(m.Run)
}
