// Package nodegroups is the contract between az-balancer and the HopelessPods
// scheduler plugin: the node groups the autoscaler could grow, as published in
// a ConfigMap (default kube-system/ballast-node-groups). Both programs import
// this package and nothing else of each other.
package nodegroups

import (
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// APIVersion is the only version of the document this package reads and writes.
	APIVersion = "ballast.k8s.io/v1alpha1"
	// Kind of the document stored under DataKey.
	Kind = "NodeGroupList"
	// DataKey is the ConfigMap data key that holds the YAML document.
	DataKey = "node-groups.yaml"

	// DefaultNamespace and DefaultName locate the ConfigMap when nothing else is configured.
	DefaultNamespace = "kube-system"
	DefaultName      = "ballast-node-groups"

	// TemplateHostnamePrefix names the synthetic nodes built from templates, as
	// cluster-autoscaler names its template nodes; no existing node can have it.
	TemplateHostnamePrefix = "template-node-for-"
)

// NodeGroupList is the document stored in the ConfigMap.
type NodeGroupList struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// GeneratedAt is when the writer last refreshed the list. Readers treat a
	// list older than their configured maximum age as unknown (fail-open).
	// Hand-written lists may omit it and disable the age check in the reader.
	GeneratedAt *time.Time `json:"generatedAt,omitempty"`
	// Source says who wrote the list, e.g. "az-balancer" or "manual".
	Source     string      `json:"source,omitempty"`
	NodeGroups []NodeGroup `json:"nodeGroups"`
}

// NodeGroup describes the nodes one group (one ASG) would add.
type NodeGroup struct {
	Name          string            `json:"name"`
	Zone          string            `json:"zone,omitempty"`
	MinSize       int32             `json:"minSize"`
	MaxSize       int32             `json:"maxSize"`
	CurrentSize   int32             `json:"currentSize"`
	Labels        map[string]string `json:"labels,omitempty"`
	Taints        []v1.Taint        `json:"taints,omitempty"`
	Allocatable   v1.ResourceList   `json:"allocatable"`
	InstanceTypes []string          `json:"instanceTypes,omitempty"`
}

// CanGrow reports whether the autoscaler may still add a node to the group.
func (g *NodeGroup) CanGrow() bool { return g.CurrentSize < g.MaxSize }

// deprecatedTwins are the beta labels kubelet (os, arch) and the cloud node
// controller (instance type, zone, region) set beside the stable ones; a
// hand-written template that gives only the stable label gets its twin, as
// the launched node would (cluster-autoscaler's template does the same).
var deprecatedTwins = map[string]string{
	v1.LabelOSStable:           "beta.kubernetes.io/os",
	v1.LabelArchStable:         "beta.kubernetes.io/arch",
	v1.LabelInstanceTypeStable: v1.LabelInstanceType,
	v1.LabelTopologyZone:       v1.LabelFailureDomainBetaZone,
	v1.LabelTopologyRegion:     v1.LabelFailureDomainBetaRegion,
}

// TemplateNode builds the node the group would add, the way the autoscaler
// simulates it: labels (with the beta twins of the stable well-known ones),
// taints and allocatable of the template, a hostname no existing node has,
// and ready.
func (g *NodeGroup) TemplateNode() *v1.Node {
	name := TemplateHostnamePrefix + g.Name
	labels := make(map[string]string, len(g.Labels)+1)
	for k, v := range g.Labels {
		labels[k] = v
	}
	for stable, beta := range deprecatedTwins {
		if v, ok := labels[stable]; ok {
			if _, set := labels[beta]; !set {
				labels[beta] = v
			}
		}
	}
	labels[v1.LabelHostname] = name
	alloc := make(v1.ResourceList, len(g.Allocatable))
	for k, v := range g.Allocatable {
		alloc[k] = v.DeepCopy()
	}
	if _, ok := alloc[v1.ResourcePods]; !ok {
		// kubelet's default when the template does not say.
		alloc[v1.ResourcePods] = *resource.NewQuantity(110, resource.DecimalSI)
	}
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       v1.NodeSpec{Taints: append([]v1.Taint(nil), g.Taints...)},
		Status: v1.NodeStatus{
			Capacity:    alloc,
			Allocatable: alloc,
			Conditions:  []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}},
		},
	}
}
