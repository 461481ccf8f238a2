package balancer

import (
	"testing"

	v1 "k8s.io/api/core/v1"
)

// TestReview14aNodeWithAStartupTaintReplacesTheRememberedNode (review 14a,
// against 66e3019, "a good template node is ready as cluster-autoscaler
// reads readiness"): cluster-autoscaler builds its templates from the nodes
// its obtainNodeLists returns as ready (core/static_autoscaler.go: the
// TemplateNodeInfoProvider is given readyNodes), and obtainNodeLists takes
// out of readyNodes, beyond GetReadinessState, every node that carries a
// startup taint (utils/taints FilterOutNodesWithStartupTaints: a taint
// named by --startup-taint / --ignore-taint, or prefixed
// startup-taint.cluster-autoscaler.kubernetes.io/ or
// ignore-taint.cluster-autoscaler.kubernetes.io/, "Overriding status of
// node ..., which seems to have startup taint"), and every node whose GPU
// is not allocatable yet (FilterOutNodesWithUnreadyResources). Such a node
// is no template for CA, which keeps its cached template of the group's
// earlier node. goodTemplateNode checks only the conditions and the
// not-ready, disk-pressure and network-unavailable taints: a node Ready
// for an hour that still carries the startup taint this project ships CA
// with (deploy/README.md: --startup-taint=ebs.csi.aws.com/agent-not-ready,
// given to az-balancer too; the EBS CSI node agent removes it once it
// runs, and never does while it crash-loops) replaces what az-balancer
// remembers of the group. Here batch ran batch-0 (disk=nvme), which CA
// cached; batch-0 went, and batch-1 (disk=ssd) is Ready but keeps the
// startup taint: CA's template of batch is still batch-0's and CA scales
// batch up for a pod selecting disk=nvme, which Ballast parks.
func TestReview14aNodeWithAStartupTaintReplacesTheRememberedNode(t *testing.T) {
	const startup = "ebs.csi.aws.com/agent-not-ready"
	for _, tc := range []struct {
		name    string
		unready func(n *v1.Node) // what makes the second node unready for CA, Ready all along
	}{
		{name: "a startup taint", unready: func(n *v1.Node) {
			n.Spec.Taints = []v1.Taint{{Key: startup, Effect: v1.TaintEffectNoExecute}}
		}},
		// CA's GPU processor for AWS (GPULabel k8s.amazonaws.com/accelerator):
		// a node with the label and no allocatable nvidia.com/gpu yet is
		// unready ("allocatable GPU may be equal to 0 up to 15 minutes after
		// node registers as ready", static_autoscaler.go obtainNodeLists).
		{name: "a GPU not allocatable yet", unready: func(n *v1.Node) {
			n.Labels["k8s.amazonaws.com/accelerator"] = "nvidia-tesla-t4"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.b.opts.Templates.StartupTaints = []string{startup}
			if v := nvmeAfterAnUnreadyNode(t, f, tc.unready); v.Hopeless {
				ng := templateOf(t, f, "batch")
				t.Fatalf("FALSE PARK: batch-1 has %s, no template node for CA, whose template of batch is still batch-0's (disk=nvme): CA scales batch up for the pod; Ballast: %s; published labels %v, variants %+v",
					tc.name, v.Message, ng.Labels, ng.Variants)
			}
		})
	}
}
