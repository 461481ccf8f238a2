package nodegroups

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	in := &NodeGroupList{GeneratedAt: &at, Source: "az-balancer", NodeGroups: []NodeGroup{{
		Name: "cassandra-us-east-1a", Zone: "us-east-1a", MinSize: 0, MaxSize: 40, CurrentSize: 30,
		Labels:        map[string]string{"pool": "cassandra", "topology.kubernetes.io/zone": "us-east-1a"},
		Taints:        []v1.Taint{{Key: "dedicated", Value: "cassandra", Effect: v1.TaintEffectNoSchedule}},
		Allocatable:   v1.ResourceList{v1.ResourceCPU: resource.MustParse("7910m"), v1.ResourceMemory: resource.MustParse("60Gi")},
		InstanceTypes: []string{"i3.2xlarge"},
	}}}
	data, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("round trip (-in, +out):\n%s", diff)
	}
	n := out.NodeGroups[0].TemplateNode()
	if n.Labels[v1.LabelHostname] != "template-node-for-cassandra-us-east-1a" || n.Status.Allocatable.Pods().Value() != 110 {
		t.Errorf("template node: hostname %q, pods %v", n.Labels[v1.LabelHostname], n.Status.Allocatable.Pods())
	}
}

func TestDecodeRejects(t *testing.T) {
	head := "apiVersion: ballast.k8s.io/v1alpha1\nkind: NodeGroupList\n"
	tests := map[string]struct {
		data map[string]string
		want string
	}{
		"missing key":      {map[string]string{"other": ""}, "data key \"node-groups.yaml\" is missing"},
		"not yaml":         {map[string]string{DataKey: "{["}, DataKey},
		"wrong version":    {map[string]string{DataKey: "apiVersion: v9\nkind: NodeGroupList\nnodeGroups: []\n"}, "apiVersion"},
		"unknown field":    {map[string]string{DataKey: head + "nodeGroups:\n- name: a\n  maxSize: 1\n  allocatable: {cpu: 1}\n  maxsize: 3\n"}, "unknown field \"nodeGroups[0].maxsize\""},
		"max below min":    {map[string]string{DataKey: head + "nodeGroups:\n- name: a\n  minSize: 3\n  maxSize: 1\n  allocatable: {cpu: 1}\n"}, "nodeGroups[0].maxSize"},
		"bad taint effect": {map[string]string{DataKey: head + "nodeGroups:\n- name: a\n  maxSize: 1\n  allocatable: {cpu: 1}\n  taints: [{key: k, effect: Sometimes}]\n"}, "nodeGroups[0].taints[0].effect"},
		"bad quantity":     {map[string]string{DataKey: head + "nodeGroups:\n- name: a\n  maxSize: 1\n  allocatable: {cpu: lots}\n"}, "quantities must match"},
		"no allocatable":   {map[string]string{DataKey: head + "nodeGroups:\n- name: a\n  maxSize: 1\n"}, "nodeGroups[0].allocatable"},
		"duplicate name":   {map[string]string{DataKey: head + "nodeGroups:\n- {name: a, maxSize: 1, allocatable: {cpu: 1}}\n- {name: a, maxSize: 1, allocatable: {cpu: 1}}\n"}, "nodeGroups[1].name"},
		"bad label":        {map[string]string{DataKey: head + "nodeGroups:\n- {name: a, maxSize: 1, allocatable: {cpu: 1}, labels: {\"bad key!\": x}}\n"}, "nodeGroups[0].labels"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want error containing %q, got %v", tt.want, err)
			}
		})
	}
}

// TestTemplateNodeBetaTwins: a hand-written template that gives the stable
// well-known labels gets the beta twins the launched node carries; a twin
// given explicitly is kept.
func TestTemplateNodeBetaTwins(t *testing.T) {
	g := NodeGroup{Name: "g", MaxSize: 1, Labels: map[string]string{
		v1.LabelOSStable: "linux", v1.LabelArchStable: "arm64", v1.LabelTopologyZone: "us-east-1a",
		v1.LabelTopologyRegion: "us-east-1", v1.LabelInstanceTypeStable: "m7g.large", v1.LabelFailureDomainBetaZone: "explicit",
	}}
	got := g.TemplateNode().Labels
	want := map[string]string{
		v1.LabelOSStable: "linux", "beta.kubernetes.io/os": "linux", v1.LabelArchStable: "arm64", "beta.kubernetes.io/arch": "arm64",
		v1.LabelTopologyZone: "us-east-1a", v1.LabelFailureDomainBetaZone: "explicit",
		v1.LabelTopologyRegion: "us-east-1", v1.LabelFailureDomainBetaRegion: "us-east-1",
		v1.LabelInstanceTypeStable: "m7g.large", v1.LabelInstanceType: "m7g.large",
		v1.LabelHostname: "template-node-for-g",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("template labels (-want, +got):\n%s", diff)
	}
	if _, ok := g.Labels["beta.kubernetes.io/os"]; ok {
		t.Error("TemplateNode changed the group's labels")
	}
}

// TestVariantsDecode: a group's variants decode, round-trip, and each is a
// template node of its own (its labels, taints and allocatable only, a
// hostname of its own, the beta twins as for the group's template).
func TestVariantsDecode(t *testing.T) {
	doc := `apiVersion: ballast.k8s.io/v1alpha1
kind: NodeGroupList
nodeGroups:
- name: batch
  maxSize: 5
  labels: {workload: batch, disk: ssd}
  taints: [{key: dedicated, value: batch, effect: NoSchedule}]
  allocatable: {cpu: "4", memory: 16Gi}
  variants:
  - labels: {workload: batch, disk: nvme, kubernetes.io/arch: arm64}
    allocatable: {cpu: "8", memory: 32Gi, pods: "58"}
  - labels: {workload: batch, rack: r2}
    taints: [{key: gpu, effect: NoExecute}]
    allocatable: {cpu: "2"}
`
	list, err := Decode(map[string]string{DataKey: doc})
	if err != nil {
		t.Fatal(err)
	}
	g := list.NodeGroups[0]
	if len(g.Variants) != 2 {
		t.Fatalf("decoded %d variants, want 2", len(g.Variants))
	}
	data, err := Encode(list)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(list, again); diff != "" {
		t.Errorf("round trip (-in, +out):\n%s", diff)
	}
	nodes := g.TemplateNodes()
	if len(nodes) != 3 {
		t.Fatalf("%d template nodes, want the group's and one per variant", len(nodes))
	}
	if diff := cmp.Diff(g.TemplateNode(), nodes[0]); diff != "" {
		t.Errorf("first template node is not the group's (-want, +got):\n%s", diff)
	}
	names := map[string]bool{}
	for _, n := range nodes {
		if n.Labels[v1.LabelHostname] != n.Name || !strings.HasPrefix(n.Name, TemplateHostnamePrefix) || names[n.Name] {
			t.Errorf("template node %q: hostname %q; want unique names with prefix %s", n.Name, n.Labels[v1.LabelHostname], TemplateHostnamePrefix)
		}
		names[n.Name] = true
	}
	v0 := nodes[1]
	if _, twin := v0.Labels["beta.kubernetes.io/arch"]; v0.Labels["disk"] != "nvme" || v0.Labels[v1.LabelArchStable] != "arm64" || twin || len(v0.Spec.Taints) != 0 {
		t.Errorf("variant 0 node: labels %v, taints %v; want disk=nvme, its labels exactly (no beta twin added, as CA's template from a node) and no taint (nothing inherited)", v0.Labels, v0.Spec.Taints)
	}
	if q := v0.Status.Allocatable[v1.ResourcePods]; q.Value() != 58 {
		t.Errorf("variant 0 offers %s pods, want 58", q.String())
	}
	v1n := nodes[2]
	if _, ok := v1n.Labels["disk"]; ok || v1n.Labels["rack"] != "r2" {
		t.Errorf("variant 1 node labels %v: want rack=r2 and no disk (nothing inherited from the group)", v1n.Labels)
	}
	if _, ok := v1n.Status.Allocatable[v1.ResourceMemory]; ok || v1n.Status.Allocatable.Pods().Value() != 110 {
		t.Errorf("variant 1 node allocatable %v: want cpu and the default pods only", v1n.Status.Allocatable)
	}
	if len(v1n.Spec.Taints) != 1 || v1n.Spec.Taints[0].Key != "gpu" {
		t.Errorf("variant 1 node taints %v, want its own gpu taint only", v1n.Spec.Taints)
	}
}

func TestVariantsRejected(t *testing.T) {
	head := "apiVersion: ballast.k8s.io/v1alpha1\nkind: NodeGroupList\nnodeGroups:\n- name: a\n  maxSize: 1\n  allocatable: {cpu: 1}\n  variants:\n"
	many := ""
	for range MaxVariants + 1 {
		many += "  - {allocatable: {cpu: 1}}\n"
	}
	tests := map[string]struct {
		variants, want string
	}{
		"unknown field":     {"  - {allocatable: {cpu: 1}, lables: {a: b}}\n", `unknown field "nodeGroups[0].variants[0].lables"`},
		"no allocatable":    {"  - {labels: {a: b}}\n", "nodeGroups[0].variants[0].allocatable"},
		"negative":          {"  - {allocatable: {cpu: -1}}\n", "nodeGroups[0].variants[0].allocatable[cpu]"},
		"bad label":         {"  - {allocatable: {cpu: 1}}\n  - {allocatable: {cpu: 1}, labels: {\"bad key!\": x}}\n", "nodeGroups[0].variants[1].labels"},
		"bad label value":   {"  - {allocatable: {cpu: 1}, labels: {a: \"not ok!\"}}\n", "nodeGroups[0].variants[0].labels[a]"},
		"bad taint effect":  {"  - {allocatable: {cpu: 1}, taints: [{key: k, effect: Sometimes}]}\n", "nodeGroups[0].variants[0].taints[0].effect"},
		"taint without key": {"  - {allocatable: {cpu: 1}, taints: [{effect: NoSchedule}]}\n", "nodeGroups[0].variants[0].taints[0].key"},
		"too many":          {many, "nodeGroups[0].variants: Too many"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(map[string]string{DataKey: head + tt.variants})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want error containing %q, got %v", tt.want, err)
			}
		})
	}
}
