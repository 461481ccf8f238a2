package shapes

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/ballast-k8s/ballast/config/nodegroups"
)

var testOpts = &Options{IdentityLabels: sets.New(v1.LabelHostname)}

func node(name string, labels map[string]string, taints []v1.Taint, cpu, mem string) *v1.Node {
	l := map[string]string{v1.LabelHostname: name}
	for k, v := range labels {
		l[k] = v
	}
	alloc := v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse(mem), v1.ResourcePods: resource.MustParse("110")}
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}, Spec: v1.NodeSpec{Taints: taints}, Status: v1.NodeStatus{Allocatable: alloc}}
}

var batchTaint = v1.Taint{Key: "dedicated", Value: "batch", Effect: v1.TaintEffectNoSchedule}

func TestCheck(t *testing.T) {
	batch := node("b1", map[string]string{"pool": "batch"}, []v1.Taint{batchTaint}, "4", "16Gi")
	cordoned := node("c1", nil, nil, "4", "16Gi")
	cordoned.Spec.Unschedulable = true
	tests := []struct {
		name string
		pod  *v1.Pod
		node *v1.Node
		want Reason
	}{
		{"fits", st.MakePod().NodeSelector(map[string]string{"pool": "batch"}).Toleration("dedicated").Obj(), batch, ReasonNone},
		{"node selector mismatch", st.MakePod().NodeSelector(map[string]string{"pool": "web"}).Obj(), batch, ReasonNodeAffinity},
		{"required affinity mismatch", st.MakePod().NodeAffinityIn("pool", []string{"web"}, st.NodeSelectorTypeMatchExpressions).Obj(), batch, ReasonNodeAffinity},
		{"wrong toleration", st.MakePod().NodeSelector(map[string]string{"pool": "batch"}).Tolerations([]v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "batchjobs"}}).Obj(), batch, ReasonTaint},
		{"PreferNoSchedule is not a reason", st.MakePod().Obj(), node("p", nil, []v1.Taint{{Key: "x", Effect: v1.TaintEffectPreferNoSchedule}}, "1", "1Gi"), ReasonNone},
		{"cordoned", st.MakePod().Obj(), cordoned, ReasonUnschedulable},
		{"cordoned but tolerated", st.MakePod().Toleration(v1.TaintNodeUnschedulable).Obj(), cordoned, ReasonNone},
		{"cpu above allocatable", st.MakePod().Req(map[v1.ResourceName]string{v1.ResourceCPU: "5"}).Obj(), cordonedFree(), ReasonInsufficientMaximum},
		{"memory equal to allocatable fits", st.MakePod().Req(map[v1.ResourceName]string{v1.ResourceMemory: "16Gi"}).Obj(), cordonedFree(), ReasonNone},
		{"init container counts", st.MakePod().Req(map[v1.ResourceName]string{v1.ResourceCPU: "1"}).InitReq(map[v1.ResourceName]string{v1.ResourceCPU: "6"}).Obj(), cordonedFree(), ReasonInsufficientMaximum},
		{"overhead counts", st.MakePod().Req(map[v1.ResourceName]string{v1.ResourceCPU: "3500m"}).Overhead(v1.ResourceList{v1.ResourceCPU: resource.MustParse("600m")}).Obj(), cordonedFree(), ReasonInsufficientMaximum},
		{"extended resource missing", st.MakePod().Req(map[v1.ResourceName]string{"example.com/gpu": "1"}).Obj(), cordonedFree(), ReasonInsufficientMaximum},
		{"hostname affinity to another node", st.MakePod().NodeAffinityIn(v1.LabelHostname, []string{"gone"}, st.NodeSelectorTypeMatchExpressions).Obj(), batch, ReasonNodeAffinity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRequirements(tt.pod, nil, testOpts)
			got := ReasonNone
			if f := r.Check(tt.node); f != nil {
				got = f.Reason
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("reason (-want, +got):\n%s", diff)
			}
		})
	}
}

func cordonedFree() *v1.Node { return node("free", nil, nil, "4", "16Gi") }

func localPV(host string) BoundVolume {
	return BoundVolume{Claim: "data-cassandra-0", PV: &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "local-pv-1"},
		Spec: v1.PersistentVolumeSpec{NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
			MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{host}}}}}}}},
	}}
}

func TestEvaluateMessages(t *testing.T) {
	tests := []struct {
		name       string
		nodes      []*v1.Node
		groups     []nodegroups.NodeGroup
		pod        *v1.Pod
		volumes    []BoundVolume
		wantReason Reason
		wantMsg    string
	}{
		{
			name:       "the incident: wrong toleration",
			nodes:      []*v1.Node{node("b1", map[string]string{"pool": "batch"}, []v1.Taint{batchTaint}, "4", "16Gi"), node("w1", map[string]string{"pool": "web"}, nil, "4", "16Gi")},
			pod:        st.MakePod().NodeSelector(map[string]string{"pool": "batch"}).Tolerations([]v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "batchjobs", Effect: v1.TaintEffectNoSchedule}}).Obj(),
			wantReason: ReasonTaint,
			wantMsg:    "no node or node group tolerates taint dedicated=batch:NoSchedule (pod tolerates dedicated=batchjobs:NoSchedule)",
		},
		{
			name:       "selector matches nothing",
			nodes:      []*v1.Node{node("w1", map[string]string{"pool": "web"}, nil, "4", "16Gi")},
			pod:        st.MakePod().NodeSelector(map[string]string{"pool": "gpu"}).Obj(),
			wantReason: ReasonNodeAffinity,
			wantMsg:    "no node or node group matches the pod's node selector and required node affinity (nodeSelector pool=gpu)",
		},
		{
			name:       "requests above every allocatable",
			nodes:      []*v1.Node{node("w1", nil, nil, "4", "16Gi"), node("w2", map[string]string{"big": "yes"}, nil, "16", "64Gi")},
			pod:        st.MakePod().Req(map[v1.ResourceName]string{v1.ResourceCPU: "64"}).Obj(),
			wantReason: ReasonInsufficientMaximum,
			wantMsg:    "the pod requests cpu=64, more than the allocatable of any node or node group it could use (largest: cpu=16)",
		},
		{
			name:       "local PV on a deleted node",
			nodes:      []*v1.Node{node("w1", nil, nil, "4", "16Gi")},
			groups:     []nodegroups.NodeGroup{{Name: "asg-a", MaxSize: 10, Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("8")}}},
			pod:        st.MakePod().Obj(),
			volumes:    []BoundVolume{localPV("ip-10-0-0-7")},
			wantReason: ReasonVolumeNodeAffinity,
			wantMsg:    "PersistentVolume local-pv-1 bound to claim data-cassandra-0 requires kubernetes.io/hostname In [ip-10-0-0-7]",
		},
		{
			name:       "no nodes at all",
			pod:        st.MakePod().Obj(),
			wantReason: ReasonNodeAffinity,
			wantMsg:    msgNoNodes,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore(testOpts, len(tt.groups) > 0)
			for _, n := range tt.nodes {
				s.UpsertNode(n)
			}
			s.SetTemplates(&nodegroups.NodeGroupList{NodeGroups: tt.groups}, TemplatesOK)
			v := s.Evaluate(NewRequirements(tt.pod, tt.volumes, testOpts))
			if !v.Hopeless {
				t.Fatalf("want hopeless, got %+v", v)
			}
			if diff := cmp.Diff(tt.wantReason, v.Reason); diff != "" {
				t.Errorf("reason (-want, +got):\n%s", diff)
			}
			if !strings.HasPrefix(v.Message, MessagePrefix) || !strings.Contains(v.Message, tt.wantMsg) {
				t.Errorf("message %q does not contain %q", v.Message, tt.wantMsg)
			}
		})
	}
}

func TestTemplatesDecide(t *testing.T) {
	gpuPod := st.MakePod().NodeSelector(map[string]string{"pool": "gpu"}).Toleration("nvidia.com/gpu").Obj()
	gpuGroup := nodegroups.NodeGroup{Name: "gpu-a", MaxSize: 3, Labels: map[string]string{"pool": "gpu"},
		Taints: []v1.Taint{{Key: "nvidia.com/gpu", Effect: v1.TaintEffectNoSchedule}}, Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("8")}}
	full := gpuGroup
	full.CurrentSize = 3
	tests := []struct {
		name  string
		state TemplateState
		group nodegroups.NodeGroup
		want  string
	}{
		{"scale from zero fits: not hopeless", TemplatesOK, gpuGroup, "feasible"},
		{"group at max size: hopeless", TemplatesOK, full, "hopeless"},
		{"stale templates: fail open", TemplatesStale, full, "fail-open"},
		{"invalid templates: fail open", TemplatesInvalid, full, "fail-open"},
		{"missing templates: fail open", TemplatesMissing, full, "fail-open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore(testOpts, true)
			s.UpsertNode(node("w1", nil, nil, "4", "16Gi"))
			s.SetTemplates(&nodegroups.NodeGroupList{NodeGroups: []nodegroups.NodeGroup{tt.group}}, tt.state)
			v := s.Evaluate(NewRequirements(gpuPod, nil, testOpts))
			if got := outcome(v); got != tt.want {
				t.Fatalf("got %s, want %s (%+v)", got, tt.want, v)
			}
		})
	}
}

func TestStoreShapesAndGenerations(t *testing.T) {
	s := NewStore(testOpts, false)
	for i, name := range []string{"a", "b", "c"} {
		_ = i
		s.UpsertNode(node(name, map[string]string{"pool": "web"}, nil, "4", "16Gi"))
	}
	if n, sh, _ := s.Counts(); n != 3 || sh != 1 {
		t.Fatalf("3 nodes differing only in hostname must make 1 shape, got %d nodes %d shapes", n, sh)
	}
	gen, mgen := s.Generations()
	// Re-creating a node of an existing shape changes membership only.
	s.DeleteNode("c")
	s.UpsertNode(node("d", map[string]string{"pool": "web"}, nil, "4", "16Gi"))
	gen2, mgen2 := s.Generations()
	if gen2 != gen || mgen2 == mgen {
		t.Fatalf("churn within a shape: gen %d->%d (want same), memberGen %d->%d (want changed)", gen, gen2, mgen, mgen2)
	}
	// A taint moves a node to a new shape.
	s.UpsertNode(node("d", map[string]string{"pool": "web"}, []v1.Taint{batchTaint}, "4", "16Gi"))
	if _, sh, _ := s.Counts(); sh != 2 {
		t.Fatalf("want 2 shapes after tainting a node, got %d", sh)
	}
	if g, _ := s.Generations(); g == gen {
		t.Fatal("a new shape must change the shape generation")
	}
	// Deleting the representative keeps the shape usable.
	s.DeleteNode("a")
	v := s.Evaluate(NewRequirements(st.MakePod().Obj(), nil, testOpts))
	if v.Hopeless {
		t.Fatalf("pod fits node b, got %+v", v)
	}
}

func TestNarrowing(t *testing.T) {
	s := NewStore(testOpts, false)
	s.UpsertNode(node("gpu-1", map[string]string{"pool": "gpu"}, nil, "4", "16Gi"))
	for _, n := range []string{"w1", "w2", "w3", "w4"} {
		s.UpsertNode(node(n, map[string]string{"pool": "web"}, nil, "4", "16Gi"))
	}
	v := s.Evaluate(NewRequirements(st.MakePod().NodeSelector(map[string]string{"pool": "gpu"}).Obj(), nil, testOpts))
	if diff := cmp.Diff(sets.New("gpu-1"), v.Nodes); diff != "" {
		t.Errorf("narrowed nodes (-want, +got):\n%s", diff)
	}
	v = s.Evaluate(NewRequirements(st.MakePod().Obj(), nil, testOpts))
	if v.Nodes != nil {
		t.Errorf("a pod that fits every node must not be narrowed, got %v", v.Nodes)
	}
	// Identity: a local PV on w2 narrows to w2 alone.
	v = s.Evaluate(NewRequirements(st.MakePod().Obj(), []BoundVolume{localPV("w2")}, testOpts))
	if diff := cmp.Diff(sets.New("w2"), v.Nodes); diff != "" {
		t.Errorf("identity narrowing (-want, +got):\n%s", diff)
	}
}

func TestStale(t *testing.T) {
	now := time.Now()
	old := metav1.NewTime(now.Add(-time.Hour)).Time
	l := &nodegroups.NodeGroupList{GeneratedAt: &old}
	if !l.Stale(now, 10*time.Minute) || l.Stale(now, 0) || (&nodegroups.NodeGroupList{}).Stale(now, time.Minute) {
		t.Fatal("staleness: an hour-old list is stale at 10m, never with 0, and a list without generatedAt never is")
	}
}

// TestTemplateVariantsDecide: a group hosts a pod when its own template or
// any of its variants does (the autoscaler may build the group's template
// from any of them); a pod no variant hosts is parked, and a group at its
// maximum size hosts nothing, whatever its variants.
func TestTemplateVariantsDecide(t *testing.T) {
	batch := nodegroups.NodeGroup{Name: "batch", MaxSize: 3, Labels: map[string]string{"workload": "batch", "disk": "ssd"},
		Taints:      []v1.Taint{batchTaint},
		Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("4")},
		Variants: []nodegroups.Variant{
			{Labels: map[string]string{"workload": "batch", "disk": "nvme"}, Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("4")}},
			{Labels: map[string]string{"workload": "batch", "rack": "r2"}, Taints: []v1.Taint{batchTaint},
				Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("16")}},
		}}
	full := batch
	full.CurrentSize = full.MaxSize
	pod := func(sel map[string]string, cpu string, tolerate bool) *v1.Pod {
		p := st.MakePod().NodeSelector(sel).Req(map[v1.ResourceName]string{v1.ResourceCPU: cpu})
		if tolerate {
			p = p.Toleration(batchTaint.Key)
		}
		return p.Obj()
	}
	tests := []struct {
		name  string
		group nodegroups.NodeGroup
		pod   *v1.Pod
		want  string
	}{
		{"the group's own template", batch, pod(map[string]string{"disk": "ssd"}, "1", true), "feasible"},
		{"only variant 0's label value", batch, pod(map[string]string{"disk": "nvme"}, "1", false), "feasible"},
		{"only variant 1's label and cpu", batch, pod(map[string]string{"rack": "r2"}, "12", true), "feasible"},
		{"variant 1's label but variant 0's missing toleration", batch, pod(map[string]string{"rack": "r2"}, "1", false), "hopeless"},
		{"labels of two variants at once", batch, pod(map[string]string{"disk": "nvme", "rack": "r2"}, "1", true), "hopeless"},
		{"a value no variant has", batch, pod(map[string]string{"disk": "hdd"}, "1", true), "hopeless"},
		{"variant 1's cpu with variant 0's label", batch, pod(map[string]string{"disk": "nvme"}, "12", true), "hopeless"},
		{"group at max size", full, pod(map[string]string{"disk": "nvme"}, "1", false), "hopeless"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore(testOpts, true)
			s.UpsertNode(node("w1", nil, nil, "2", "16Gi"))
			s.SetTemplates(&nodegroups.NodeGroupList{NodeGroups: []nodegroups.NodeGroup{tt.group}}, TemplatesOK)
			v := s.Evaluate(NewRequirements(tt.pod, nil, testOpts))
			if got := outcome(v); got != tt.want {
				t.Fatalf("got %s, want %s (%+v)", got, tt.want, v)
			}
		})
	}
}

// outcome names what a verdict does with the pod: "fail-open" (the plugin
// does not judge), "hopeless" (parked) or "feasible".
func outcome(v Verdict) string {
	switch {
	case v.FailOpen:
		return "fail-open"
	case v.Hopeless:
		return "hopeless"
	}
	return "feasible"
}
