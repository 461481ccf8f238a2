// Package balancer runs az-balancer's loop against a real etcd and an
// in-process kube-apiserver v1.37.2, and against the emulated AWS endpoint
// (internal/awstest) through the real aws-sdk-go-v2 clients. etcd is taken
// from PATH (make builds it into bin/); the apiserver is started once for the
// package and every subtest works in its own namespace.
package balancer

import (
	"testing"

	"k8s.io/kubernetes/test/integration/framework"
)

func TestMain(m *testing.M) {
	framework.EtcdMain(m.Run)
}
