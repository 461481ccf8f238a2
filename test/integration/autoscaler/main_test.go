//go:build e2e

// Package autoscaler runs the real cluster-autoscaler 1.36.1 (AWS provider,
// bin/cluster-autoscaler, built by `make cluster-autoscaler`) as a subprocess
// against a real etcd and an in-process kube-apiserver v1.37.2, with the AWS
// emulator (internal/awstest) as its Auto Scaling and EC2 endpoints, Ballast's
// scheduler and az-balancer in process, and a small loop that does kubelet's
// and the cloud node controller's jobs: a Node for each running instance, its
// deletion when the instance terminates. `make e2e` runs it (build tag e2e),
// so that `make test` does not need cluster-autoscaler.
package autoscaler

import (
	"testing"

	"k8s.io/kubernetes/test/integration/framework"
)

func TestMain(m *testing.M) {
	framework.EtcdMain(m.Run)
}
