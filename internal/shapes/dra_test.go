package shapes

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	"k8s.io/utils/ptr"
)

func draOpts(classes ...*resourceapi.DeviceClass) *Options {
	opts := FeatureOptions(utilfeature.DefaultFeatureGate)
	opts.IdentityLabels = testOpts.IdentityLabels
	opts.DeviceClasses = NewDeviceClasses()
	for _, dc := range classes {
		opts.DeviceClasses.Upsert(dc)
	}
	return opts
}

func class(name, extended string) *resourceapi.DeviceClass {
	dc := &resourceapi.DeviceClass{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if extended != "" {
		dc.Spec.ExtendedResourceName = ptr.To(extended)
	}
	return dc
}

func withAlloc(n *v1.Node, name v1.ResourceName, q string) *v1.Node {
	n.Status.Allocatable[name] = resource.MustParse(q)
	return n
}

// TestExtendedResourcesDecidedByDeviceClasses mirrors NodeResourcesFit's
// shouldDelegateResourceToDRA in v1.37.2 (DRAExtendedResource GA, locked on):
// a resource a DeviceClass maps goes to DynamicResources on a node that does
// not advertise it; otherwise it is compared with allocatable like any other.
func TestExtendedResourcesDecidedByDeviceClasses(t *testing.T) {
	if !FeatureOptions(utilfeature.DefaultFeatureGate).EnableDRAExtendedResource {
		t.Fatal("DRAExtendedResource is GA and locked on in v1.37.2")
	}
	gpu := class("gpu.example.com", "example.com/dra-gpu")
	fpga := class("fpga.example.com", "")
	tests := []struct {
		name    string
		classes []*resourceapi.DeviceClass
		node    *v1.Node
		request v1.ResourceName
		qty     string
		want    Reason
	}{
		{"implicit name of an existing class", []*resourceapi.DeviceClass{fpga}, cordonedFree(), "deviceclass.resource.kubernetes.io/fpga.example.com", "1", ReasonNone},
		{"implicit name of no class", []*resourceapi.DeviceClass{gpu}, cordonedFree(), "deviceclass.resource.kubernetes.io/fpga.example.com", "1", ReasonInsufficientMaximum},
		{"extended name a class maps", []*resourceapi.DeviceClass{gpu}, cordonedFree(), "example.com/dra-gpu", "4", ReasonNone},
		{"extended name no class maps and no node has", []*resourceapi.DeviceClass{fpga}, cordonedFree(), "example.com/dra-gpu", "1", ReasonInsufficientMaximum},
		{"mapped, but the node advertises too few: a device plugin's, compared", []*resourceapi.DeviceClass{gpu}, withAlloc(cordonedFree(), "example.com/dra-gpu", "1"), "example.com/dra-gpu", "2", ReasonInsufficientMaximum},
		{"mapped, the node advertises zero: DRA's", []*resourceapi.DeviceClass{gpu}, withAlloc(cordonedFree(), "example.com/dra-gpu", "0"), "example.com/dra-gpu", "2", ReasonNone},
		{"device plugin resource the node has", nil, withAlloc(cordonedFree(), "example.com/gpu", "2"), "example.com/gpu", "2", ReasonNone},
		{"device plugin resource above allocatable", nil, withAlloc(cordonedFree(), "example.com/gpu", "2"), "example.com/gpu", "3", ReasonInsufficientMaximum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := st.MakePod().Req(map[v1.ResourceName]string{tt.request: tt.qty}).Obj()
			got := ReasonNone
			if f := NewRequirements(pod, nil, draOpts(tt.classes...)).Check(tt.node); f != nil {
				got = f.Reason
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("reason (-want, +got):\n%s", diff)
			}
		})
	}
}

// TestNodeWithoutPodsAllocatable: NodeResourcesFit allows no pod on a node
// whose allocatable has no pods entry.
func TestNodeWithoutPodsAllocatable(t *testing.T) {
	n := cordonedFree()
	delete(n.Status.Allocatable, v1.ResourcePods)
	f := NewRequirements(st.MakePod().Obj(), nil, testOpts).Check(n)
	if f == nil || f.Reason != ReasonInsufficientMaximum {
		t.Fatalf("want %s, got %+v", ReasonInsufficientMaximum, f)
	}
}

func TestStoreDeviceClassChangesVerdict(t *testing.T) {
	opts := draOpts()
	s := NewStore(opts, false)
	s.UpsertNode(cordonedFree())
	req := NewRequirements(st.MakePod().Req(map[v1.ResourceName]string{"example.com/dra-gpu": "1"}).Obj(), nil, opts)
	v := s.Evaluate(req)
	if !v.Hopeless || !strings.Contains(v.Message, "no DeviceClass maps it") {
		t.Fatalf("want hopeless naming the missing DeviceClass, got %+v", v)
	}
	gen, _ := s.Generations()
	if !s.UpsertDeviceClass(class("gpu.example.com", "example.com/dra-gpu")) {
		t.Fatal("a new class must report a change")
	}
	if g, _ := s.Generations(); g == gen {
		t.Fatal("a new mapping must change the shape generation (cached verdicts)")
	}
	if s.UpsertDeviceClass(class("gpu.example.com", "example.com/dra-gpu")) {
		t.Fatal("the same class again is no change")
	}
	if v := s.Evaluate(req); v.Hopeless {
		t.Fatalf("mapped: want it left to the scheduler, got %+v", v)
	}
	// Two classes mapping one name (a migration): the scheduler's cache
	// keeps one holder, and deleting either class unmaps the name although
	// the other still maps it (extendedresourcecache v0.37.2). A pod asking
	// for it then fails NodeResourcesFit on every node: hopeless, as the
	// scheduler decides, until a class is written again.
	v2 := class("gpu-v2.example.com", "example.com/dra-gpu")
	s.UpsertDeviceClass(v2)
	s.DeleteDeviceClass(class("gpu.example.com", "example.com/dra-gpu"))
	if v := s.Evaluate(req); !v.Hopeless {
		t.Fatalf("the scheduler's cache unmapped the name with either class: want hopeless, got %+v", v)
	}
	if !s.UpsertDeviceClass(v2) {
		t.Fatal("an update of the remaining class maps the name again: a change")
	}
	if v := s.Evaluate(req); v.Hopeless {
		t.Fatalf("mapped again by the remaining class's update, got %+v", v)
	}
	s.DeleteDeviceClass(v2)
	if v := s.Evaluate(req); !v.Hopeless {
		t.Fatalf("no class left: want hopeless, got %+v", v)
	}
}

// TestIdentityRelabel: a node keeping its shape but changing an identity
// label changes the member generation, so identity verdicts are recomputed.
func TestIdentityRelabel(t *testing.T) {
	s := NewStore(testOpts, false)
	n := node("a", nil, nil, "4", "16Gi")
	s.UpsertNode(n)
	pod := st.MakePod().NodeAffinityIn(v1.LabelHostname, []string{"b"}, st.NodeSelectorTypeMatchExpressions).Obj()
	req := NewRequirements(pod, nil, testOpts)
	if v := s.Evaluate(req); !v.Hopeless {
		t.Fatalf("no node is b: want hopeless, got %+v", v)
	}
	gen, mgen := s.Generations()
	relabeled := n.DeepCopy()
	relabeled.Labels[v1.LabelHostname] = "b"
	s.UpsertNode(relabeled)
	gen2, mgen2 := s.Generations()
	if gen2 != gen || mgen2 == mgen {
		t.Fatalf("identity relabel: gen %d->%d (want same), memberGen %d->%d (want changed)", gen, gen2, mgen, mgen2)
	}
	if v := s.Evaluate(req); v.Hopeless {
		t.Fatalf("node a is now b: want feasible, got %+v", v)
	}
	// A label outside the identity set that moves no shape bumps nothing.
	s.UpsertNode(relabeled.DeepCopy())
	if _, m := s.Generations(); m != mgen2 {
		t.Fatalf("an unchanged node bumped the member generation %d->%d", mgen2, m)
	}
}

// TestCSIMigratedInTreeVolume: VolumeBinding translates an in-tree EBS PV on
// nodes whose CSINode lists the plugin as migrated (its zone key becomes
// topology.ebs.csi.aws.com/zone); a node passes when either form matches.
func TestCSIMigratedInTreeVolume(t *testing.T) {
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "ebs-1"},
		Spec: v1.PersistentVolumeSpec{
			PersistentVolumeSource: v1.PersistentVolumeSource{AWSElasticBlockStore: &v1.AWSElasticBlockStoreVolumeSource{VolumeID: "aws://us-east-1a/vol-1"}},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelFailureDomainBetaZone, Operator: v1.NodeSelectorOpIn, Values: []string{"us-east-1a"}}}}}}},
		},
	}
	req := NewRequirements(st.MakePod().Obj(), []BoundVolume{{Claim: "data", PV: pv}}, testOpts)
	for _, tt := range []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{v1.LabelFailureDomainBetaZone: "us-east-1a"}, true},
		{map[string]string{"topology.ebs.csi.aws.com/zone": "us-east-1a"}, true},
		{map[string]string{"topology.ebs.csi.aws.com/zone": "us-east-1b", v1.LabelFailureDomainBetaZone: "us-east-1b"}, false},
		{map[string]string{v1.LabelTopologyZone: "us-east-1a"}, false},
	} {
		if got := req.Check(node("n", tt.labels, nil, "4", "16Gi")) == nil; got != tt.want {
			t.Errorf("node labels %v: fits %v, want %v", tt.labels, got, tt.want)
		}
	}
	// The PV object is not changed by the translation.
	if pv.Spec.AWSElasticBlockStore == nil || pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Key != v1.LabelFailureDomainBetaZone {
		t.Fatalf("the PV was modified: %+v", pv.Spec)
	}
}
