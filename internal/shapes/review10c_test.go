package shapes_test

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apitypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/names"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// TestReview10cIgnoredExtendedResources: NodeResourcesFit's args
// ignoredResources and ignoredResourceGroups (KubeSchedulerConfiguration
// pluginConfig, NodeResourcesFitArgs; also filled in by scheduler.New from
// every extender managedResource with ignoredByScheduler: true,
// pkg/scheduler/scheduler.go buildExtenders) make the real v1.37.2 filter skip
// those extended resources (pkg/scheduler/framework/plugins/noderesources/
// fit.go fitsRequest: "If this resource is one of the extended resources that
// should be ignored, we will skip checking it"). The pod below requests
// example.com/foo, which no node advertises (an extender manages it): the real
// scheduler places it. Ballast knows nothing of those args
// (internal/shapes/predicates.go aboveAllocatable compares every scalar
// resource; shapes.Options has no ignored resources) and parks it with
// "requests above allocatable": a FALSE PARK that no event ever releases.
func TestReview10cIgnoredExtendedResources(t *testing.T) {
	schedmetrics.Register()
	ctx := quietContext(t)
	for _, c := range []struct {
		name string
		args func(*config.NodeResourcesFitArgs)
		res  v1.ResourceName
	}{
		{"ignoredResources", func(a *config.NodeResourcesFitArgs) { a.IgnoredResources = []string{"example.com/foo"} }, "example.com/foo"},
		{"ignoredResourceGroups", func(a *config.NodeResourcesFitArgs) { a.IgnoredResourceGroups = []string{"extender.example.com"} }, "extender.example.com/bar"},
	} {
		t.Run(c.name, func(t *testing.T) {
			alloc := v1.ResourceList{v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("8Gi"), v1.ResourcePods: resource.MustParse("110")}
			node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{v1.LabelHostname: "n1"}},
				Status: v1.NodeStatus{Allocatable: alloc, Capacity: alloc}}
			pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: apitypes.UID("uid-p")},
				Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{
					Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1"), c.res: resource.MustParse("1")},
					Limits:   v1.ResourceList{c.res: resource.MustParse("1")}}}}}}
			w := &world{name: c.name, nodes: []*v1.Node{node}}
			rs := newRealSchedulerProfile(t, ctx, w, func(p *config.KubeSchedulerProfile) {
				for i := range p.PluginConfig {
					if p.PluginConfig[i].Name == names.NodeResourcesFit {
						args := p.PluginConfig[i].Args.(*config.NodeResourcesFitArgs)
						c.args(args)
						return
					}
				}
				t.Fatal("the default profile has no NodeResourcesFit args")
			})
			if v := placedVerdict(t, ctx, rs, w, node, pod); v.Hopeless {
				t.Fatalf("FALSE PARK: NodeResourcesFit with %s passes node %s, Ballast parks the pod: %s", c.name, node.Name, v.Message)
			}
		})
	}
}

// TestReview10cDisabledFilterPlugin (low severity, a rare configuration): a
// profile may disable a default filter (KubeSchedulerConfiguration
// profiles[].plugins.filter.disabled; pkg/scheduler/apis/config/types.go
// Plugins, "Disabled Plugins are disabled from the enabled set"). Ballast's
// HopelessPods shares the profile but always applies all four static
// predicates (internal/shapes/predicates.go Requirements.Check): with
// TaintToleration's filter disabled the real scheduler places a pod on a
// tainted node, Ballast parks it ("no node or node group tolerates").
func TestReview10cDisabledFilterPlugin(t *testing.T) {
	schedmetrics.Register()
	ctx := quietContext(t)
	alloc := v1.ResourceList{v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("8Gi"), v1.ResourcePods: resource.MustParse("110")}
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{v1.LabelHostname: "n1"}},
		Spec:   v1.NodeSpec{Taints: []v1.Taint{{Key: "dedicated", Value: "infra", Effect: v1.TaintEffectNoSchedule}}},
		Status: v1.NodeStatus{Allocatable: alloc, Capacity: alloc}}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: apitypes.UID("uid-p")},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c"}}}}
	w := &world{name: "disabled", nodes: []*v1.Node{node}}
	rs := newRealSchedulerProfile(t, ctx, w, func(p *config.KubeSchedulerProfile) {
		p.Plugins.Filter.Disabled = append(p.Plugins.Filter.Disabled, config.Plugin{Name: names.TaintToleration})
		var kept []config.Plugin
		for _, pl := range p.Plugins.Filter.Enabled {
			if pl.Name != names.TaintToleration {
				kept = append(kept, pl)
			}
		}
		p.Plugins.Filter.Enabled = kept
	})
	if v := placedVerdict(t, ctx, rs, w, node, pod); v.Hopeless {
		t.Fatalf("FALSE PARK: a profile without the TaintToleration filter places the pod on %s, Ballast parks it: %s", node.Name, v.Message)
	}
}

// placedVerdict checks that the real scheduler rs places pod on node (the
// setup of a false-park test), then returns Ballast's verdict of the pod on
// node with the same profile, as cmd/scheduler hands it to the plugin.
func placedVerdict(t *testing.T, ctx context.Context, rs *realScheduler, w *world, node *v1.Node, pod *v1.Pod) shapes.Verdict {
	t.Helper()
	rejectedBy, why := rs.verdicts(ctx, pod, w.candidates())
	if rejectedBy[node.Name] != "" {
		t.Fatalf("setup: the real scheduler rejects the pod on %s (%s: %s); want it placed", node.Name, rejectedBy[node.Name], why[node.Name])
	}
	opts := ballastOptions()
	if err := opts.ApplyProfile(rs.profile, nil); err != nil {
		t.Fatal(err)
	}
	store := shapes.NewStore(opts, false)
	store.UpsertNode(node)
	return store.Evaluate(shapes.NewRequirements(pod, nil, opts))
}
