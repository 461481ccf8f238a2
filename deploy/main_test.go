package deploy_test

import (
	"testing"

	"k8s.io/kubernetes/test/integration/framework"
)

// TestMain starts etcd (from PATH; `make etcd` builds it into bin/) for the
// kube-apiserver the apply tests start.
func TestMain(m *testing.M) {
	framework.EtcdMain(m.Run)
}
