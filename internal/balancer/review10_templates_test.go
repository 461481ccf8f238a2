package balancer

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/shapes"
)

// TestTemplateOfEKSManagedNodeGroup (review10): the ASG of an EKS managed
// node group carries the tags eks:cluster-name and eks:nodegroup-name, and
// every node it launches carries the label eks.amazonaws.com/nodegroup=<name>
// (EKS user guide, "Simplify node lifecycle with managed node groups": EKS
// labels the nodes it manages). cluster-autoscaler 1.36.1's AWS template has
// it too: extractLabelsFromAsg turns every "eks:" tag into a label
// (cloudprovider/aws/aws_manager.go:410-414, here nodegroup-name and
// cluster-name) and, for such a group, buildNodeFromTemplate adds the labels
// of DescribeNodegroup (aws_manager.go:307-316), among them
// eks.amazonaws.com/nodegroup (aws_wrapper.go:107). So a pod pinned to a
// managed node group scaled to zero with the usual
// nodeSelector eks.amazonaws.com/nodegroup is one CA adds a node for; Ballast
// must not park it.
func TestTemplateOfEKSManagedNodeGroup(t *testing.T) {
	it := &asg.InstanceType{Name: "g5.xlarge", VCPU: 4, MemoryMiB: 16384, Architectures: []string{"x86_64"}, NvidiaGPUs: 1}
	g := &asg.Group{Name: "eks-gpu-ng-1ac6b2a0", Zones: []string{"us-east-1a"}, MaxSize: 4, Tags: map[string]string{
		"eks:cluster-name":                  "prod",
		"eks:nodegroup-name":                "gpu-ng",
		"k8s.io/cluster-autoscaler/enabled": "true",
		"k8s.io/cluster-autoscaler/prod":    "owned",
		"kubernetes.io/cluster/prod":        "owned",
	}}
	ng := template(g, it, nil, &warnings{})
	tmpl := ng.TemplateNode()
	for k, v := range map[string]string{
		"eks.amazonaws.com/nodegroup": "gpu-ng", // on the launched node and in CA's template
		"nodegroup-name":              "gpu-ng", // in CA's template (eks: tag)
		"cluster-name":                "prod",   // in CA's template (eks: tag)
	} {
		if got, ok := tmpl.Labels[k]; !ok || got != v {
			t.Errorf("template label %s = %q (present %v), want %q as the launched node / CA's template", k, got, ok, v)
		}
	}
	pod := &v1.Pod{Spec: v1.PodSpec{NodeSelector: map[string]string{"eks.amazonaws.com/nodegroup": "gpu-ng"}}}
	req := shapes.NewRequirements(pod, nil, &shapes.Options{IdentityLabels: sets.New(v1.LabelHostname)})
	if err := req.Check(tmpl); err != nil {
		t.Errorf("a pod with nodeSelector eks.amazonaws.com/nodegroup=gpu-ng does not fit its group's template (CA scales that group up for it): %v", err)
	}
}

// TestTemplateResourcesAgainstCATemplate (review10): cluster-autoscaler
// 1.36.1 builds an ASG's template with capacity from the instance type and
// sets allocatable to that capacity (cloudprovider/aws/aws_manager.go:283-297,
// "node.Status.Allocatable = node.Status.Capacity"), then adds only a
// kube-proxy pod requesting 100m CPU (aws_cloud_provider.go:423,
// cloudprovider/utils.go BuildKubeProxy). So for a group at size zero CA
// scales up for a pod requesting, on an m5.large (2 vCPU, 8 GiB), 8000Mi of
// memory; az-balancer's template subtracts 355Mi and Ballast parks that pod.
// Issue 12 asks for templates that match CA's for every static predicate, and
// issue 10's promise is that a pod CA could add a node for is never parked.
// The e2e fidelity matrix has no row between a template's allocatable and
// its capacity, so it cannot see this.
func TestTemplateResourcesAgainstCATemplate(t *testing.T) {
	it := &asg.InstanceType{Name: "m5.large", VCPU: 2, MemoryMiB: 8192, Architectures: []string{"x86_64"}}
	g := &asg.Group{Name: "web-a", Zones: []string{"us-east-1a"}, MaxSize: 3}
	tmpl := (func() *v1.Node { ng := template(g, it, nil, &warnings{}); return ng.TemplateNode() })()
	opts := &shapes.Options{IdentityLabels: sets.New(v1.LabelHostname)}
	for _, tc := range []struct {
		name string
		req  v1.ResourceList
	}{
		{"memory between Ballast's allocatable and CA's", v1.ResourceList{v1.ResourceMemory: resource.MustParse("8000Mi")}},
		{"all of CA's memory", v1.ResourceList{v1.ResourceMemory: resource.MustParse("8Gi")}},
	} {
		pod := &v1.Pod{Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{Requests: tc.req}}}}}
		if f := shapes.NewRequirements(pod, nil, opts).Check(tmpl); f != nil {
			t.Errorf("%s (%v): parked against the template (%+v, allocatable memory %s), but CA's template for the group has allocatable memory 8Gi and CA scales up for it",
				tc.name, tc.req, f.Reason, tmpl.Status.Allocatable.Memory())
		}
	}
}

// A malformed eks: tag (not a label key or value once the marker is cut) is
// bad input: it is skipped with a warning, and the template is still built.
func TestTemplateSkipsMalformedEKSTags(t *testing.T) {
	it := &asg.InstanceType{Name: "m5.large", VCPU: 2, MemoryMiB: 8192, Architectures: []string{"x86_64"}}
	g := &asg.Group{Name: "eks-ng", Zones: []string{"us-east-1a"}, MaxSize: 2, Tags: map[string]string{
		"eks:not a key!":     "x",
		"eks:nodegroup-name": "bad value with spaces",
		"eks:cluster-name":   "prod",
		"eks:":               "empty key",
	}}
	w := &warnings{}
	ng := template(g, it, nil, w)
	for k := range ng.Labels {
		if k == "not a key!" || k == "" || k == "nodegroup-name" || k == labelEKSNodegroup {
			t.Errorf("malformed eks tag became label %q=%q", k, ng.Labels[k])
		}
	}
	if ng.Labels["cluster-name"] != "prod" {
		t.Errorf("the well-formed eks:cluster-name tag is missing: %v", ng.Labels)
	}
	skipped := 0
	for _, f := range w.items {
		if f.reason == ReasonMalformedTag {
			skipped++
		}
	}
	if skipped != 2 {
		t.Errorf("%d malformed-tag warnings, want 2 (the bad key and the bad value): %+v", skipped, w.items)
	}
}
