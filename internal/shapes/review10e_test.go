package shapes_test

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apitypes "k8s.io/apimachinery/pkg/types"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/shapes"
)

// TestReview10eVariantGainsBetaTwins: a variant is a remembered good node
// "sanitized as CA sanitizes it". cluster-autoscaler 1.36.1 builds the
// template from a real node with simulator.SanitizedTemplateNodeInfoFromNodeInfo
// (processors/nodeinfosprovider/mixed_nodeinfos_processor.go:108), which only
// replaces the hostname (simulator/node_info_utils.go createSanitizedNode); it
// does NOT call labels.UpdateDeprecatedLabels (only the tags path,
// SanitizedTemplateNodeInfoFromNodeGroup, does). Ballast's
// nodegroups.templateNode adds the beta twins of the stable labels to every
// variant (config/nodegroups/types.go deprecatedTwins), so a remembered node
// that lacked failure-domain.beta.kubernetes.io/zone becomes a template that
// has it. A pod with NotIn on the beta zone (a missing key satisfies NotIn)
// fits CA's template of that node, the real scheduler places it there, and
// Ballast parks it: FALSE PARK (the group scaled to zero; no existing node).
func TestReview10eVariantGainsBetaTwins(t *testing.T) {
	schedmetrics.Register()
	ctx := quietContext(t)
	alloc := v1.ResourceList{v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("8Gi"), v1.ResourcePods: resource.MustParse("110")}
	// The group's last good node as CA's sanitized template of it: stable
	// zone label, no beta zone label (a cloud controller that sets only the
	// stable labels), hostname replaced.
	labels := map[string]string{v1.LabelTopologyZone: "us-east-1a", v1.LabelOSStable: "linux", "pool": "blue"}
	caNode := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "template-node-for-batch-123", Labels: map[string]string{v1.LabelHostname: "template-node-for-batch-123"}},
		Status: v1.NodeStatus{Allocatable: alloc, Capacity: alloc, Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}}}
	for k, v := range labels {
		caNode.Labels[k] = v
	}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: apitypes.UID("uid-p")},
		Spec: v1.PodSpec{
			Affinity: &v1.Affinity{NodeAffinity: &v1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{
				NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{
					{Key: "pool", Operator: v1.NodeSelectorOpIn, Values: []string{"blue"}},
					{Key: v1.LabelFailureDomainBetaZone, Operator: v1.NodeSelectorOpNotIn, Values: []string{"us-east-1a"}},
				}}}}}},
			Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1")}}}}}}
	w := &world{name: "beta-twins", nodes: []*v1.Node{caNode}}
	rs := newRealScheduler(t, ctx, w)
	rejectedBy, why := rs.verdicts(ctx, pod, w.candidates())
	if rejectedBy[caNode.Name] != "" {
		t.Fatalf("setup: the real scheduler rejects the pod on CA's template node (%s: %s)", rejectedBy[caNode.Name], why[caNode.Name])
	}
	// What az-balancer publishes for that group: the widened base (tags
	// template, which has the beta zone twin and lacks pool=blue) and the
	// node's variant, exactly its labels.
	g := nodegroups.NodeGroup{Name: "batch", MaxSize: 3,
		Labels:      map[string]string{v1.LabelTopologyZone: "us-east-1a", v1.LabelFailureDomainBetaZone: "us-east-1a", v1.LabelOSStable: "linux"},
		Allocatable: alloc,
		Variants:    []nodegroups.Variant{{Labels: labels, Allocatable: alloc}}}
	opts := ballastOptions()
	store := shapes.NewStore(opts, true)
	store.SetTemplates(&nodegroups.NodeGroupList{NodeGroups: []nodegroups.NodeGroup{g}}, shapes.TemplatesOK)
	if v := store.Evaluate(shapes.NewRequirements(pod, nil, opts)); v.Hopeless {
		t.Errorf("FALSE PARK: CA's template of the group's node admits the pod, Ballast parks it: %s", v.Message)
	}
}
