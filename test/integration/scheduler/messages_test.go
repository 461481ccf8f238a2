package scheduler

import (
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	testutils "k8s.io/kubernetes/test/integration/util"

	"github.com/ballast-k8s/ballast/plugins/hopeless"
	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// withoutHopeless returns a copy of profile as vanilla v1.37.2 runs it: the
// same plugins and args, HopelessPods taken out of every extension point.
func withoutHopeless(profile config.KubeSchedulerProfile, name string) config.KubeSchedulerProfile {
	out := *profile.DeepCopy()
	out.SchedulerName = name
	points := reflect.ValueOf(out.Plugins).Elem()
	for i := 0; i < points.NumField(); i++ {
		set, ok := points.Field(i).Addr().Interface().(*config.PluginSet)
		if !ok {
			continue
		}
		var kept []config.Plugin
		for _, p := range set.Enabled {
			if p.Name != hopeless.Name {
				kept = append(kept, p)
			}
		}
		set.Enabled = kept
	}
	var cfgs []config.PluginConfig
	for _, c := range out.PluginConfig {
		if c.Name != hopeless.Name {
			cfgs = append(cfgs, c)
		}
	}
	out.PluginConfig = cfgs
	return out
}

// A pod that is not hopeless but cannot be placed now must read exactly
// what vanilla v1.37.2 tells it, node by node: a user debugging a pending
// pod needs the real reasons, not "didn't satisfy plugin(s) [HopelessPods]".
func TestUnschedulableMessageIsVanillas(t *testing.T) {
	server := testutils.InitTestAPIServer(t, "messages", nil)
	testCtx := testutils.WithNewNamespace(t, server, "messages")
	ctx, cs, ns := testCtx.Ctx, testCtx.ClientSet, testCtx.NS.Name
	defer testutils.CleanupNodes(cs, t)
	createNodes(t, cs,
		testenv.Node("batch-1", map[string]string{"pool": "batch"}, []v1.Taint{batchTaint}),
		testenv.Node("batch-2", map[string]string{"pool": "batch"}, []v1.Taint{batchTaint}),
		testenv.Node("web-1", map[string]string{"pool": "web"}, nil))
	// web-1 is nearly full: resource pressure, never a reason to park.
	filler := makePod(ns, "filler", "", nil, nil)
	filler.Spec.NodeName = "web-1"
	filler.Spec.Containers[0].Resources.Requests[v1.ResourceCPU] = resource.MustParse("3900m")
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, filler, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	cfg := testenv.LoadConfig(t, "config/samples/secondary-profile.yaml", nil)
	testenv.StartSchedulerWithProfiles(t, testCtx, append(cfg.Profiles, withoutHopeless(cfg.Profiles[0], "vanilla"))...)

	messages := map[string]string{}
	for _, schedulerName := range []string{"vanilla", "ballast-scheduler"} {
		pod := makePod(ns, "one-cpu-"+schedulerName, schedulerName, nil, nil)
		pod.Spec.Containers[0].Resources.Requests[v1.ResourceCPU] = resource.MustParse("1")
		pod, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := waitCondition(ctx, t, testCtx, pod, 20*time.Second, "unschedulable", testenv.Unschedulable)
		messages[schedulerName] = scheduledCondition(got).Message
	}
	t.Logf("vanilla: %s", messages["vanilla"])
	if diff := cmp.Diff(messages["vanilla"], messages["ballast-scheduler"]); diff != "" {
		t.Errorf("Ballast's message differs from vanilla's (-vanilla, +ballast):\n%s", diff)
	}
}
