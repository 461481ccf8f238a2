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
