package shapes_test

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apitypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/names"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// profileCase is a world where exactly one mirrored filter rejects the pod.
type profileCase struct {
	filter string
	node   func(*v1.Node)
	pod    func(*v1.Pod)
	pvs    []*v1.PersistentVolume
	pvcs   []*v1.PersistentVolumeClaim
}

func profileCases() []profileCase {
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-0"},
		Spec: v1.PersistentVolumeSpec{
			Capacity:               v1.ResourceList{v1.ResourceStorage: resource.MustParse("10Gi")},
			PersistentVolumeSource: v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: "/mnt/disks/ssd0"}},
			ClaimRef:               &v1.ObjectReference{Namespace: "default", Name: "data"},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: "pool", Operator: v1.NodeSelectorOpIn, Values: []string{"storage"}}},
			}}}},
		},
		Status: v1.PersistentVolumeStatus{Phase: v1.VolumeBound},
	}
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "data", Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
		Spec:       v1.PersistentVolumeClaimSpec{VolumeName: "pv-0"},
		Status:     v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound},
	}
	return []profileCase{
		{filter: names.NodeAffinity, pod: func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{"pool": "gpu"} }},
		{filter: names.TaintToleration, node: func(n *v1.Node) {
			n.Spec.Taints = []v1.Taint{{Key: "dedicated", Value: "infra", Effect: v1.TaintEffectNoSchedule}}
		}},
		{filter: names.NodeUnschedulable, node: func(n *v1.Node) { n.Spec.Unschedulable = true }},
		{filter: names.NodeResourcesFit, pod: func(p *v1.Pod) {
			p.Spec.Containers[0].Resources.Requests = v1.ResourceList{v1.ResourceCPU: resource.MustParse("8")}
		}},
		{filter: names.VolumeBinding, pod: func(p *v1.Pod) {
			p.Spec.Volumes = []v1.Volume{{Name: "data", VolumeSource: v1.VolumeSource{
				PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
		}, pvs: []*v1.PersistentVolume{pv}, pvcs: []*v1.PersistentVolumeClaim{pvc}},
	}
}

// TestProfileFiltersDifferential: for each filter Ballast mirrors, a world
// only that filter rejects, judged by the real v1.37.2 framework and by
// Ballast under the same profile (Options.ApplyProfile): the default profile
// (both reject, Ballast parks) and the profile that disables the filter
// (profiles[].plugins.filter.disabled; both place the pod, Ballast parks
// nothing).
func TestProfileFiltersDifferential(t *testing.T) {
	schedmetrics.Register()
	ctx := quietContext(t)
	for _, c := range profileCases() {
		for _, disable := range []bool{false, true} {
			name := c.filter + "/default"
			if disable {
				name = c.filter + "/disabled"
			}
			t.Run(name, func(t *testing.T) {
				alloc := v1.ResourceList{v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("8Gi"), v1.ResourcePods: resource.MustParse("110")}
				node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{v1.LabelHostname: "n1", "pool": "a"}},
					Status: v1.NodeStatus{Allocatable: alloc, Capacity: alloc}}
				pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: apitypes.UID("uid-p")},
					Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c"}}}}
				if c.node != nil {
					c.node(node)
				}
				if c.pod != nil {
					c.pod(pod)
				}
				w := &world{name: name, nodes: []*v1.Node{node}, pvs: c.pvs, pvcs: c.pvcs}
				rs := newRealSchedulerProfile(t, ctx, w, func(p *config.KubeSchedulerProfile) {
					if disable {
						p.Plugins.Filter.Disabled = append(p.Plugins.Filter.Disabled, config.Plugin{Name: c.filter})
					}
				})
				rejectedBy, why := rs.verdicts(ctx, pod, w.candidates())
				opts := ballastOptions()
				if err := opts.ApplyProfile(rs.profile, nil); err != nil {
					t.Fatal(err)
				}
				var volumes []shapes.BoundVolume
				for _, pv := range c.pvs {
					volumes = append(volumes, shapes.BoundVolume{Claim: pv.Spec.ClaimRef.Name, PV: pv})
				}
				store := shapes.NewStore(opts, false)
				store.UpsertNode(node)
				v := store.Evaluate(shapes.NewRequirements(pod, volumes, opts))
				if disable {
					if rejectedBy[node.Name] != "" {
						t.Fatalf("setup: with %s's filter disabled the real scheduler still rejects (%s: %s)", c.filter, rejectedBy[node.Name], why[node.Name])
					}
					if v.Hopeless {
						t.Fatalf("FALSE PARK: the profile does not run %s's filter, the real scheduler places the pod, Ballast parks it: %s", c.filter, v.Message)
					}
					return
				}
				if rejectedBy[node.Name] != c.filter {
					t.Fatalf("setup: the default profile rejects by %q (%s), want %s", rejectedBy[node.Name], why[node.Name], c.filter)
				}
				if !v.Hopeless {
					t.Fatalf("MISSED PARK: %s rejects the only node, Ballast does not park", c.filter)
				}
			})
		}
	}
}

// TestApplyProfile: the rules ApplyProfile copies from v1.37.2.
func TestApplyProfile(t *testing.T) {
	fit := func(a *config.NodeResourcesFitArgs) *config.KubeSchedulerProfile {
		return &config.KubeSchedulerProfile{SchedulerName: "p", Plugins: &config.Plugins{
			MultiPoint: config.PluginSet{Enabled: []config.Plugin{{Name: names.NodeResourcesFit}, {Name: names.TaintToleration}}},
			Filter:     config.PluginSet{Enabled: []config.Plugin{{Name: names.NodeAffinity}}, Disabled: []config.Plugin{{Name: names.TaintToleration}}},
		}, PluginConfig: []config.PluginConfig{{Name: names.NodeResourcesFit, Args: a}}}
	}
	opts := &shapes.Options{}
	if err := opts.ApplyProfile(fit(&config.NodeResourcesFitArgs{IgnoredResources: []string{"a.example/x"}}), nil); err != nil {
		t.Fatal(err)
	}
	// NodeAffinity explicitly, NodeResourcesFit by multiPoint; TaintToleration
	// disabled for filter; the others enabled nowhere.
	if want := sets.New(names.TaintToleration, names.VolumeBinding, names.NodeUnschedulable); !opts.DisabledFilters.Equal(want) {
		t.Errorf("disabled filters %v, want %v", sets.List(opts.DisabledFilters), sets.List(want))
	}
	if !opts.IgnoredResources.Equal(sets.New("a.example/x")) {
		t.Errorf("ignored %v, want the args' a.example/x", sets.List(opts.IgnoredResources))
	}
	// scheduler.New (buildExtenders) replaces the args' ignoredResources with
	// the extenders' ignoredByScheduler resources.
	ext := []config.Extender{{ManagedResources: []config.ExtenderManagedResource{
		{Name: "b.example/y", IgnoredByScheduler: true}, {Name: "b.example/z"}}}}
	if err := opts.ApplyProfile(fit(&config.NodeResourcesFitArgs{IgnoredResources: []string{"a.example/x"}}), ext); err != nil {
		t.Fatal(err)
	}
	if !opts.IgnoredResources.Equal(sets.New("b.example/y")) {
		t.Errorf("ignored with extenders %v, want only b.example/y", sets.List(opts.IgnoredResources))
	}
	// filter.disabled "*" skips the multiPoint expansion.
	star := fit(&config.NodeResourcesFitArgs{})
	star.Plugins.Filter.Disabled = []config.Plugin{{Name: "*"}}
	if err := opts.ApplyProfile(star, nil); err != nil {
		t.Fatal(err)
	}
	if opts.DisabledFilters.Has(names.NodeAffinity) || !opts.DisabledFilters.Has(names.NodeResourcesFit) {
		t.Errorf("with filter.disabled *: disabled %v, want NodeAffinity kept and NodeResourcesFit dropped", sets.List(opts.DisabledFilters))
	}
	// Args of another type: fail open for NodeResourcesFit, with an error.
	bad := fit(nil)
	bad.PluginConfig[0].Args = &config.NodeAffinityArgs{}
	if err := opts.ApplyProfile(bad, nil); err == nil || !opts.DisabledFilters.Has(names.NodeResourcesFit) {
		t.Errorf("args of another type: err %v, disabled %v; want an error and NodeResourcesFit disabled", err, sets.List(opts.DisabledFilters))
	}
}

// TestIgnoredResourcesRule: fitsRequest skips only extended resources, by
// name or by group; hugepages named in ignoredResources are still checked.
func TestIgnoredResourcesRule(t *testing.T) {
	alloc := v1.ResourceList{v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("8Gi"), v1.ResourcePods: resource.MustParse("110")}
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{v1.LabelHostname: "n1"}},
		Status: v1.NodeStatus{Allocatable: alloc, Capacity: alloc}}
	for _, c := range []struct {
		res      v1.ResourceName
		hopeless bool
	}{
		{"example.com/foo", false},
		{"grp.example.com/any", false},
		{"other.example.com/foo", true},
		{"hugepages-2Mi", true},
	} {
		opts := ballastOptions()
		opts.IgnoredResources = sets.New("example.com/foo", "hugepages-2Mi")
		opts.IgnoredResourceGroups = sets.New("grp.example.com")
		pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "uid-p"},
			Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{
				Requests: v1.ResourceList{c.res: resource.MustParse("1Mi")}, Limits: v1.ResourceList{c.res: resource.MustParse("1Mi")}}}}}}
		store := shapes.NewStore(opts, false)
		store.UpsertNode(node)
		if v := store.Evaluate(shapes.NewRequirements(pod, nil, opts)); v.Hopeless != c.hopeless {
			t.Errorf("%s: hopeless %v (%s), want %v", c.res, v.Hopeless, v.Message, c.hopeless)
		}
	}
}
