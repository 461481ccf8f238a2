// Package nodegroups is the contract between az-balancer and the HopelessPods
// scheduler plugin: the node groups the autoscaler could grow, as published in
// a ConfigMap (default kube-system/ballast-node-groups). Both programs import
// this package and nothing else of each other.
package nodegroups

import (
	"strconv"
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

	// MaxVariants bounds NodeGroup.Variants.
	MaxVariants = 16

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
	// Variants are other nodes the group may launch, each complete: the
	// autoscaler may build the group's template from any of them (a node the
	// group ran, or its configuration when that differs), so the group can
	// host a pod that its own template or any variant can. At most
	// MaxVariants.
	Variants []Variant `json:"variants,omitempty"`
}

// Variant is one alternative node of a group: its labels, taints and
// allocatable replace the group's own; nothing is inherited from them.
type Variant struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Taints      []v1.Taint        `json:"taints,omitempty"`
	Allocatable v1.ResourceList   `json:"allocatable"`
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
	return templateNode(TemplateHostnamePrefix+g.Name, WithBetaTwins(g.Labels), g.Taints, g.Allocatable)
}

// TemplateNodes returns the group's template node followed by one per
// variant, built from the variant's own labels (exactly: no beta twins are
// added, as cluster-autoscaler adds none to a template it builds from a real
// node), taints and allocatable, named
// TemplateHostnamePrefix+name+"-variant-"+index.
func (g *NodeGroup) TemplateNodes() []*v1.Node {
	out := make([]*v1.Node, 0, 1+len(g.Variants))
	out = append(out, g.TemplateNode())
	for i := range g.Variants {
		v := &g.Variants[i]
		out = append(out, templateNode(TemplateHostnamePrefix+g.Name+"-variant-"+strconv.Itoa(i), v.Labels, v.Taints, v.Allocatable))
	}
	return out
}

// WithBetaTwins returns a copy of labels with the beta twin of each stable
// well-known label it sets and whose twin it does not set, as kubelet and the
// cloud node controller label a new node and cluster-autoscaler labels the
// template it builds from a group's configuration.
func WithBetaTwins(labels map[string]string) map[string]string {
	out := make(map[string]string, len(labels)+len(deprecatedTwins))
	for k, v := range labels {
		out[k] = v
	}
	for stable, beta := range deprecatedTwins {
		if v, ok := out[stable]; ok {
			if _, set := out[beta]; !set {
				out[beta] = v
			}
		}
	}
	return out
}

func templateNode(name string, tlabels map[string]string, taints []v1.Taint, allocatable v1.ResourceList) *v1.Node {
	labels := make(map[string]string, len(tlabels)+1)
	for k, v := range tlabels {
		labels[k] = v
	}
	labels[v1.LabelHostname] = name
	alloc := make(v1.ResourceList, len(allocatable))
	for k, v := range allocatable {
		alloc[k] = v.DeepCopy()
	}
	if _, ok := alloc[v1.ResourcePods]; !ok {
		// kubelet's default when the template does not say.
		alloc[v1.ResourcePods] = *resource.NewQuantity(110, resource.DecimalSI)
	}
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       v1.NodeSpec{Taints: append([]v1.Taint(nil), taints...)},
		Status: v1.NodeStatus{
			Capacity:    alloc,
			Allocatable: alloc,
			Conditions:  []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}},
		},
	}
}
