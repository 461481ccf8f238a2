package balancer

import (
	"path"
	"testing"

	v1 "k8s.io/api/core/v1"
)

// Review 10d: templates from a group's last good nodes, against
// cluster-autoscaler 1.36.1's facts:
//   - processors/nodeinfosprovider/mixed_nodeinfos_processor.go Process: while
//     a group has a good node, its template is built from that node
//     (SanitizedTemplateNodeInfoFromNodeInfo) and cached; after the group
//     scaled to zero the cached template is used before the cloud provider's
//     (the ASG tags') template is ever built.
//   - simulator/node_info_utils.go createSanitizedNode: the template node is
//     the real node deep-copied; only its name and its kubernetes.io/hostname
//     label are replaced (and taints sanitized). Every other label, whatever
//     its value, is kept.

// TestReview10dLabelValuedLikeTheInstanceIDIsKept: a label whose value is
// the node's instance id (here node.example.com/ec2-id, set by a node
// bootstrap script) stays in CA's template (createSanitizedNode replaces the
// hostname label only), so CA's simulation places a pod selecting it on
// batch's cached template and scales batch up. az-balancer drops the label
// (perNodeLabel), so Ballast parks the pod.
func TestReview10dLabelValuedLikeTheInstanceIDIsKept(t *testing.T) {
	f := newFixture(t)
	var label string
	id, n := batchGroup(t, f, nil, func(n *v1.Node) {
		label = path.Base(n.Spec.ProviderID)
		n.Labels["node.example.com/ec2-id"] = label
	})
	if label != id {
		// The fixture's providerID ends with the instance id.
		t.Fatalf("setup: label %q, instance id %q", label, id)
	}
	scaleToZero(t, f, id, n.Name)
	pod := batchPod(func(p *v1.Pod) { p.Spec.NodeSelector["node.example.com/ec2-id"] = id })
	if v := verdict(t, f.published(t), pod); v.Hopeless {
		t.Fatalf("FALSE PARK: CA's cached template of batch keeps node.example.com/ec2-id=%s and CA scales batch up for the pod; Ballast: %s; published labels %v",
			id, v.Message, templateOf(t, f, "batch").Labels)
	}
}
