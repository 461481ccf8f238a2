package balancer

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestReview10cScaledToZeroGroupKeepsItsLastNodesTemplate: cluster-autoscaler
// 1.36.1 builds a node group's template from a ready node of the group when
// it has one, and keeps that (sanitized) template after the group scales to
// zero: processors/nodeinfosprovider/mixed_nodeinfos_processor.go,
// MixedTemplateNodeInfoProvider.Process ("No good template, check cache of
// previously running nodes"; the cache item expires after
// --node-info-cache-expire-time, 87600h by default, config/flags/flags.go).
// Only a group CA never saw a node of gets the template built from the ASG's
// tags (aws_manager.go buildNodeFromTemplate).
//
// So the labels a group's nodes got from kubelet (--node-labels in the launch
// template's user data, the usual way for self-managed groups) stay in CA's
// template after the group went to zero, and CA scales the group from zero
// for a pod that selects them; the node it launches carries them again.
// az-balancer publishes the tags-only template once the node is gone
// (internal/balancer/templates.go template: instance type, zone and
// node-template tags; the nodes of the group are read for zone ids only), so
// the plugin parks that pod: a FALSE PARK in autoscaling mode.
func TestReview10cScaledToZeroGroupKeepsItsLastNodesTemplate(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	ids := f.emu.CreateGroup(awstest.GroupSpec{Name: "batch", Zones: []string{"us-east-1a"}, MaxSize: 5, InstanceType: "m5.xlarge",
		Tags: caTags(nil), Instances: map[string]int{"us-east-1a": 1}})
	id := ids["us-east-1a"][0]
	// The node the group launched: kubelet registered it with
	// --node-labels=workload=batch (launch template user data); ready for
	// long enough to be CA's template (isNodeGoodTemplateCandidate).
	n := node("batch-0", "us-east-1a", id)
	n.Labels["workload"] = "batch"
	alloc := v1.ResourceList{v1.ResourceCPU: resource.MustParse("3920m"), v1.ResourceMemory: resource.MustParse("15Gi"), v1.ResourcePods: resource.MustParse("58")}
	n.Status = v1.NodeStatus{Allocatable: alloc, Capacity: alloc, Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue,
		LastTransitionTime: metav1.NewTime(f.clock.Now().Add(-time.Hour))}}}
	if _, err := f.kube.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	// CA scales the group in to zero (the node was unneeded): it terminates
	// the instance, decrementing the desired capacity; the node goes.
	scaleIn(t, f, id, n.Name)
	loopsAMinuteApart(t, f, 3)
	for _, i := range f.emu.GroupInstances("batch") {
		if i.LifecycleState != "Terminated" {
			t.Fatalf("setup: instance %s is %s, want the group at zero", i.ID, i.LifecycleState)
		}
	}
	ng := templateOf(t, f, "batch")
	if ng.CurrentSize != 0 || !ng.CanGrow() {
		t.Fatalf("setup: template of batch has size %d/%d, want 0 and room to grow", ng.CurrentSize, ng.MaxSize)
	}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "jobs", Name: "nightly"},
		Spec: v1.PodSpec{NodeSelector: map[string]string{"workload": "batch"}, Containers: []v1.Container{{Name: "c",
			Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1")}}}}}}
	if v := verdict(t, f.published(t), pod); v.Hopeless {
		t.Errorf("FALSE PARK: a pod selecting workload=batch, the label every node of group batch carried, is hopeless once the group is at zero "+
			"(%s); CA 1.36.1 scales batch from zero for it with its cached template of the group's last node. Published labels: %s",
			v.Message, fmt.Sprint(ng.Labels))
	}
}
