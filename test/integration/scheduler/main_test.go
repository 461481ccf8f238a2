// Package scheduler runs Ballast's scheduler against a real etcd and an
// in-process kube-apiserver v1.37.2: etcd is taken from PATH (make builds it
// into bin/), the apiserver is started once for the package.
package scheduler

import (
	"testing"

	"k8s.io/kubernetes/test/integration/framework"
)

func TestMain(m *testing.M) {
	framework.EtcdMain(m.Run)
}
