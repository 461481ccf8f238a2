package balancer

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestReview12NodeUnderDiskPressureReplacesTheRememberedNode (review 12,
// against f89df3a's memory of the groups' nodes, which rememberNodes
// replaces with the nodes goodTemplateNode accepts): cluster-autoscaler
// 1.36.1 takes a node for a template only when isNodeGoodTemplateCandidate
// (processors/nodeinfosprovider/mixed_nodeinfos_processor.go) says so, and
// its "ready" is kube_util.GetReadinessState (utils/kubernetes/ready.go):
// NodeReady True and neither NodeDiskPressure nor NodeNetworkUnavailable
// True nor the not-ready, disk-pressure or network-unavailable taint, the
// stabilization delay counted from the latest transition of the three
// conditions. goodTemplateNode looks at NodeReady only. A node under disk
// pressure (kubelet keeps NodeReady True and sets DiskPressure; the node
// lifecycle controller taints it node.kubernetes.io/disk-pressure) is no
// template for CA, which keeps using its cached template of the group's
// earlier node; az-balancer takes it for a good node and replaces what it
// remembers of the group with it, forgetting the earlier node. Here batch
// ran batch-0 (disk=nvme), which CA cached; batch-0 went, and batch-1
// (disk=ssd) runs under disk pressure: CA's template of batch is still
// batch-0's and CA scales batch up for a pod selecting disk=nvme, which
// Ballast parks: no published template or variant has disk=nvme any more.
func TestReview12NodeUnderDiskPressureReplacesTheRememberedNode(t *testing.T) {
	f := newFixture(t)
	// batch-1 comes under disk pressure, Ready all along.
	v := nvmeAfterAnUnreadyNode(t, f, func(second *v1.Node) {
		second.Status.Conditions = append(second.Status.Conditions, v1.NodeCondition{Type: v1.NodeDiskPressure, Status: v1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(f.clock.Now().Add(-10 * time.Minute))})
		second.Spec.Taints = []v1.Taint{{Key: v1.TaintNodeDiskPressure, Effect: v1.TaintEffectNoSchedule}}
	})
	if v.Hopeless {
		ng := templateOf(t, f, "batch")
		t.Fatalf("FALSE PARK: batch-1 is under disk pressure, no template node for CA, whose template of batch is still batch-0's (disk=nvme): CA scales batch up for the pod; Ballast: %s; published labels %v, variants %+v",
			v.Message, ng.Labels, ng.Variants)
	}
}
