package shapes

import (
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/ballast-k8s/ballast/config/nodegroups"
)

// A node that is still starting carries taints that go away on their own:
// kubelet registers it with node.cloudprovider.kubernetes.io/uninitialized
// (until the cloud node controller initializes it), the NodeTaint admission
// plugin and the node lifecycle controller add node.kubernetes.io/not-ready
// (NoSchedule, NoExecute) until it is Ready, and cluster-autoscaler's
// startup-taint / ignore-taint prefixes name taints an agent on the node
// removes. The node-condition taints (unreachable, pressure, network) clear
// with their condition. A pod that only these keep off a node is waiting for
// it, not hopeless: when its group is at its maximum with a node CA just
// added, that starting node is the only one that could ever host it. The
// e2e test (test/integration/autoscaler, "pods waiting on starting nodes")
// parked such a pod before.
func TestStartingNodeIsNotAReasonToPark(t *testing.T) {
	startup := []v1.Taint{
		{Key: "node.cloudprovider.kubernetes.io/uninitialized", Value: "true", Effect: v1.TaintEffectNoSchedule},
		{Key: v1.TaintNodeNotReady, Effect: v1.TaintEffectNoSchedule},
		{Key: v1.TaintNodeNotReady, Effect: v1.TaintEffectNoExecute},
		{Key: "startup-taint.cluster-autoscaler.kubernetes.io/cni", Value: "pending", Effect: v1.TaintEffectNoSchedule},
		{Key: "ignore-taint.cluster-autoscaler.kubernetes.io/agent", Effect: v1.TaintEffectNoExecute},
		{Key: v1.TaintNodeUnreachable, Effect: v1.TaintEffectNoSchedule},
		{Key: v1.TaintNodeNetworkUnavailable, Effect: v1.TaintEffectNoSchedule},
		{Key: v1.TaintNodeDiskPressure, Effect: v1.TaintEffectNoSchedule},
		{Key: v1.TaintNodeMemoryPressure, Effect: v1.TaintEffectNoSchedule},
		{Key: v1.TaintNodePIDPressure, Effect: v1.TaintEffectNoSchedule},
	}
	// The batch group is at its maximum: its template no longer counts.
	full := nodegroups.NodeGroup{Name: "batch-a", MaxSize: 1, CurrentSize: 1, Labels: map[string]string{"pool": "batch"}}
	pool := map[string]string{"pool": "batch"}
	tests := []struct {
		name   string
		taints []v1.Taint
		pod    *v1.Pod
		// want is "" for a pod that is not parked, else a word of the message.
		want string
	}{
		{"every startup taint at once", startup, st.MakePod().NodeSelector(pool).Obj(), ""},
		{"uninitialized only", startup[:1], st.MakePod().NodeSelector(pool).Obj(), ""},
		{"not-ready only", startup[1:3], st.MakePod().NodeSelector(pool).Obj(), ""},
		{"a CA startup taint", startup[3:4], st.MakePod().NodeSelector(pool).Obj(), ""},
		// The other predicates still hold on a starting node, and the
		// message names them, not the startup taints.
		{"a real taint beside the startup ones", append([]v1.Taint{batchTaint}, startup...), st.MakePod().NodeSelector(pool).Obj(), "dedicated=batch:NoSchedule"},
		{"too big for the starting node", startup, st.MakePod().NodeSelector(pool).Req(map[v1.ResourceName]string{v1.ResourceCPU: "64"}).Obj(), "cpu"},
		// A cordon is an operator's decision, not a step of starting.
		{"cordoned and starting", append([]v1.Taint{{Key: v1.TaintNodeUnschedulable, Effect: v1.TaintEffectNoSchedule}}, startup...), st.MakePod().NodeSelector(pool).Obj(), "unschedulable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore(testOpts, true)
			s.UpsertNode(node("web-1", map[string]string{"pool": "web"}, nil, "4", "16Gi"))
			s.UpsertNode(node("batch-1", pool, tt.taints, "4", "16Gi"))
			s.SetTemplates(&nodegroups.NodeGroupList{NodeGroups: []nodegroups.NodeGroup{full}}, TemplatesOK)
			v := s.Evaluate(NewRequirements(tt.pod, nil, testOpts))
			checkStartingVerdict(t, v, tt.want, "its only node is starting")
			for _, s := range []string{"uninitialized", "not-ready", "startup-taint", "pressure"} {
				if strings.Contains(v.Message, s) {
					t.Errorf("message %q names a startup taint", v.Message)
				}
			}
		})
	}
}

// The node the store keeps is a copy: the informer's object keeps its taints.
func TestStartingNodeIsNotModified(t *testing.T) {
	s := NewStore(testOpts, false)
	n := node("batch-1", nil, []v1.Taint{{Key: v1.TaintNodeNotReady, Effect: v1.TaintEffectNoSchedule}, batchTaint}, "4", "16Gi")
	s.UpsertNode(n)
	if len(n.Spec.Taints) != 2 {
		t.Fatalf("the caller's node lost taints: %v", n.Spec.Taints)
	}
	// Becoming ready adds no shape: the shape set ignores startup taints.
	ready := n.DeepCopy()
	ready.Spec.Taints = []v1.Taint{batchTaint}
	s.UpsertNode(ready)
	if _, shapes, _ := s.Counts(); shapes != 1 {
		t.Errorf("%d shapes after a node became ready, want 1", shapes)
	}
}

// A starting node also lacks labels: the cloud node controller adds the
// zone, region, instance-type and zone-id labels when it initializes the
// node, the EBS CSI driver its topology label once its node plugin runs.
// While a node starts, the store takes it for what it will become: the
// template of a group it is compatible with (every label the node has, the
// template has with the same value), with the node's own labels, taints and
// allocatable on top. The e2e test parked a pod with a zonal EBS volume
// before (its group at its maximum, the node CA added not yet initialized).
func TestStartingNodeBecomesItsGroupsTemplate(t *testing.T) {
	uninitialized := []v1.Taint{
		{Key: "node.cloudprovider.kubernetes.io/uninitialized", Value: "true", Effect: v1.TaintEffectNoSchedule},
		{Key: v1.TaintNodeNotReady, Effect: v1.TaintEffectNoSchedule},
	}
	kubeletLabels := map[string]string{"pool": "batch", v1.LabelArchStable: "amd64", v1.LabelOSStable: "linux"}
	cloudLabels := map[string]string{v1.LabelTopologyZone: "us-east-1a", v1.LabelTopologyRegion: "us-east-1",
		"topology.ebs.csi.aws.com/zone": "us-east-1a", v1.LabelInstanceTypeStable: "m5.large"}
	templateLabels := map[string]string{}
	for _, m := range []map[string]string{kubeletLabels, cloudLabels} {
		for k, v := range m {
			templateLabels[k] = v
		}
	}
	full := nodegroups.NodeGroup{Name: "batch-a", MaxSize: 1, CurrentSize: 1, Labels: templateLabels}
	other := nodegroups.NodeGroup{Name: "web-a", MaxSize: 1, CurrentSize: 1,
		Labels: map[string]string{"pool": "web", v1.LabelArchStable: "amd64", v1.LabelTopologyZone: "us-east-1c"}}
	zone := func(z string) *v1.Pod {
		return st.MakePod().NodeSelector(map[string]string{"pool": "batch", v1.LabelTopologyZone: z}).Obj()
	}
	tests := []struct {
		name    string
		taints  []v1.Taint
		labels  map[string]string
		pod     *v1.Pod
		volumes []BoundVolume
		want    string // "" for not parked, else a word of the message
	}{
		{"zone selector, node not initialized", uninitialized, kubeletLabels, zone("us-east-1a"), nil, ""},
		{"zonal volume, node not initialized", uninitialized, kubeletLabels, st.MakePod().NodeSelector(map[string]string{"pool": "batch"}).Obj(),
			[]BoundVolume{zonalPV(v1.LabelTopologyZone, "us-east-1a")}, ""},
		{"EBS zone volume, node initialized but not ready", uninitialized[1:], merge(kubeletLabels, map[string]string{v1.LabelTopologyZone: "us-east-1a"}),
			st.MakePod().Obj(), []BoundVolume{zonalPV("topology.ebs.csi.aws.com/zone", "us-east-1a")}, ""},
		// What the node will become does not host these either.
		{"another zone", uninitialized, kubeletLabels, zone("us-east-1b"), nil, "node affinity"},
		{"a volume in another zone", uninitialized, kubeletLabels, st.MakePod().Obj(),
			[]BoundVolume{zonalPV(v1.LabelTopologyZone, "us-east-1b")}, "us-east-1b"},
		{"the web group's zone on a batch node", uninitialized, kubeletLabels,
			st.MakePod().NodeSelector(map[string]string{"pool": "batch", v1.LabelTopologyZone: "us-east-1c"}).Obj(), nil, "node affinity"},
		// A ready node is what it is.
		{"ready node without the zone label", nil, kubeletLabels, zone("us-east-1a"), nil, "node affinity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore(testOpts, true)
			s.UpsertNode(node("batch-1", tt.labels, tt.taints, "2", "8Gi"))
			s.SetTemplates(&nodegroups.NodeGroupList{NodeGroups: []nodegroups.NodeGroup{full, other}}, TemplatesOK)
			v := s.Evaluate(NewRequirements(tt.pod, tt.volumes, testOpts))
			checkStartingVerdict(t, v, tt.want, "its node is starting")
		})
	}

	// Once the node is ready, the verdict is computed again.
	s := NewStore(testOpts, true)
	s.UpsertNode(node("batch-1", kubeletLabels, uninitialized, "2", "8Gi"))
	s.SetTemplates(&nodegroups.NodeGroupList{NodeGroups: []nodegroups.NodeGroup{full}}, TemplatesOK)
	gen, _ := s.Generations()
	s.UpsertNode(node("batch-1", kubeletLabels, nil, "2", "8Gi")) // the same shape, but no longer starting
	if g, _ := s.Generations(); g == gen {
		t.Error("a node that stopped starting left the shape generation unchanged")
	}
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range []map[string]string{a, b} {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func zonalPV(key, zone string) BoundVolume {
	return BoundVolume{Claim: "data", PV: &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-" + zone},
		Spec: v1.PersistentVolumeSpec{
			PersistentVolumeSource: v1.PersistentVolumeSource{CSI: &v1.CSIPersistentVolumeSource{Driver: "ebs.csi.aws.com", VolumeHandle: "vol-1"}},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: key, Operator: v1.NodeSelectorOpIn, Values: []string{zone}}}}}}},
		}}}
}

// checkStartingVerdict stops the test unless v parks the pod for want (its
// message naming it), or, with want "", leaves it unparked while what holds.
func checkStartingVerdict(t *testing.T, v Verdict, want, while string) {
	t.Helper()
	switch {
	case want == "" && v.Hopeless:
		t.Fatalf("parked while %s: %s", while, v.Message)
	case want != "" && !v.Hopeless:
		t.Fatalf("not parked, want parked for %q (%+v)", want, v)
	case want != "" && !strings.Contains(v.Message, want):
		t.Fatalf("message %q, want it to name %q", v.Message, want)
	}
}
