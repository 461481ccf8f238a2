package hopeless

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2/ktesting"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/latest"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/defaultbinder"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/names"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/queuesort"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	"k8s.io/utils/clock"

	"github.com/ballast-k8s/ballast/config/v1alpha1"
	"github.com/ballast-k8s/ballast/internal/shapes"
)

// TestPluginMirrorsItsProfile: the plugin instance of a profile applies
// that profile's configuration from the binary (SchedulerConfig), found by
// the framework's profile name: a profile without the TaintToleration filter
// and with example.com/foo ignored by an extender parks neither a pod on a
// tainted node nor one requesting example.com/foo; the default profile
// parks the first, and the second only when the binary did not say (the
// extender's resource is ignored in every profile); a profile the
// configuration does not name, or a configuration not read, fails open.
func TestPluginMirrorsItsProfile(t *testing.T) {
	schedmetrics.Register()
	cfg, err := latest.Default()
	if err != nil {
		t.Fatal(err)
	}
	relaxed := cfg.Profiles[0]
	relaxed.SchedulerName = "relaxed"
	relaxed.Plugins = relaxed.Plugins.DeepCopy()
	relaxed.Plugins.Filter.Disabled = append(relaxed.Plugins.Filter.Disabled, config.Plugin{Name: names.TaintToleration})
	sched := &SchedulerConfig{Loaded: true, Profiles: []config.KubeSchedulerProfile{cfg.Profiles[0], relaxed},
		Extenders: []config.Extender{{URLPrefix: "http://extender", ManagedResources: []config.ExtenderManagedResource{{Name: "example.com/foo", IgnoredByScheduler: true}}}}}

	tainted := makeNode("n1").Taints([]v1.Taint{{Key: "dedicated", Value: "infra", Effect: v1.TaintEffectNoSchedule}}).Obj()
	plain := st.MakePod().Namespace("default").Name("p").UID("uid-p").Obj()
	foo := st.MakePod().Namespace("default").Name("q").UID("uid-q").Obj()
	foo.Spec.Containers = []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{
		Requests: v1.ResourceList{"example.com/foo": resource.MustParse("1")}, Limits: v1.ResourceList{"example.com/foo": resource.MustParse("1")}}}}
	foo.Spec.Tolerations = []v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpExists}}

	for _, c := range []struct {
		profile  string
		sched    *SchedulerConfig
		hopeless map[string]bool // by pod name
	}{
		{"default-scheduler", nil, map[string]bool{"p": true, "q": true}},
		// Extenders apply to every profile (scheduler.New buildExtenders).
		{"default-scheduler", sched, map[string]bool{"p": true, "q": false}},
		{"relaxed", sched, map[string]bool{"p": false, "q": false}},
		{"unnamed", sched, map[string]bool{"p": false, "q": false}},
		{"relaxed", &SchedulerConfig{}, map[string]bool{"p": false, "q": false}},
	} {
		_, ctx := ktesting.NewTestContext(t)
		ctx, cancel := context.WithCancel(ctx)
		client := fake.NewClientset()
		profile := &config.KubeSchedulerProfile{SchedulerName: c.profile, Plugins: &config.Plugins{
			QueueSort: config.PluginSet{Enabled: []config.Plugin{{Name: queuesort.Name}}},
			Bind:      config.PluginSet{Enabled: []config.Plugin{{Name: defaultbinder.Name}}},
		}}
		fh, err := frameworkruntime.NewFramework(ctx, frameworkruntime.Registry{queuesort.Name: queuesort.New, defaultbinder.Name: defaultbinder.New}, profile,
			frameworkruntime.WithClientSet(client), frameworkruntime.WithInformerFactory(informers.NewSharedInformerFactory(client, 0)),
			frameworkruntime.WithEventRecorder(events.NewFakeRecorder(100)))
		if err != nil {
			t.Fatal(err)
		}
		args, err := v1alpha1.DecodeHopelessPodsArgs(nil)
		if err != nil {
			t.Fatal(err)
		}
		comps, err := build(ctx, args, fh, nil, c.sched, clock.RealClock{})
		if err != nil {
			t.Fatal(err)
		}
		comps.store.UpsertNode(tainted)
		opts := comps.store.Options() // the plugin's requirements carry the store's (verdicts.go)
		for _, pod := range []*v1.Pod{plain, foo} {
			v := comps.store.Evaluate(shapes.NewRequirements(pod, nil, opts))
			if v.Hopeless != c.hopeless[pod.Name] {
				t.Errorf("profile %q (config loaded: %v): pod %s hopeless %v (%s), want %v",
					c.profile, c.sched != nil && c.sched.Loaded, pod.Name, v.Hopeless, v.Message, c.hopeless[pod.Name])
			}
		}
		cancel()
	}
}
