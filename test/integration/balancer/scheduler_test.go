package balancer

import (
	"path/filepath"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testutils "k8s.io/kubernetes/test/integration/util"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// testSchedulerReadsTemplates: the contract between the two programs. A
// group at size 0 exists only as the balancer's template; the real plugin,
// reading the balancer's ConfigMap, must not park a pod that only that group
// could host, and must park one that no node and no group could.
func testSchedulerReadsTemplates(t *testing.T, server *testutils.TestContext) {
	e := newEnv(t, server, "templates")
	e.emu.CreateGroup(awstest.GroupSpec{Name: "gpu-us-east-1a", Zones: zones[:1], MinSize: 0, MaxSize: 5, InstanceType: "p3.2xlarge",
		Tags: caTags(map[string]string{tagLabel + "pool": "gpu", tagTaint + "nvidia.com/gpu": "present:NoSchedule"})})
	e.createNode("tmpl-web-1", zones[0], "", nil) // an ordinary node, in no group
	e.mustReconcile()
	if _, list := e.publishedGroups(); len(list.NodeGroups) != 1 || list.NodeGroups[0].CurrentSize != 0 || list.NodeGroups[0].Labels["pool"] != "gpu" {
		t.Fatalf("published %+v, want gpu-us-east-1a at size 0 with pool=gpu", list.NodeGroups)
	}

	startScheduler(t, e.testCtx, "autoscaling-profile.yaml", map[string]any{
		"autoscaling": true, "nodeGroupsConfigMap": map[string]string{"namespace": e.ns, "name": nodegroups.DefaultName}})

	gpuToleration := []v1.Toleration{{Key: "nvidia.com/gpu", Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule}}
	// Parked first: proves the plugin holds the templates (without them it
	// fails open and parks nothing), so that the verdict below is not fail-open.
	lost := e.createPod("lost", map[string]string{"pool": "tpu"}, gpuToleration)
	e.waitCondition(lost, "parked", testenv.ParkedByBallast)
	// The taint came through the tags: without the toleration the group cannot host it.
	intolerant := e.createPod("intolerant", map[string]string{"pool": "gpu"}, nil)
	e.waitCondition(intolerant, "parked", testenv.ParkedByBallast)

	trainer := e.createPod("trainer", map[string]string{"pool": "gpu"}, gpuToleration)
	got := e.waitCondition(trainer, "unschedulable", func(p *v1.Pod) bool {
		c := scheduledCondition(p)
		return c != nil && c.Status == v1.ConditionFalse
	})
	if testenv.ParkedByBallast(got) {
		t.Fatalf("a pod that only the size-0 group can host was parked: %s", describe(got))
	}
	// Not parked by a later attempt either (the plugin's hint or a flush
	// could bring it back and park it).
	testenv.NeverPod(e.ctx, t, e.cs, trainer, 2*time.Second, "parked by Ballast on a later attempt", testenv.ParkedByBallast)
}

// startScheduler runs Ballast's scheduler with the profile of a sample.
func startScheduler(t *testing.T, testCtx *testutils.TestContext, sample string, args map[string]any) {
	t.Helper()
	testenv.StartScheduler(t, testCtx, filepath.Join("config", "samples", sample), args)
}

// waitCondition waits until the pod satisfies ok.
func (e *env) waitCondition(pod *v1.Pod, what string, ok func(*v1.Pod) bool) *v1.Pod {
	e.t.Helper()
	return testenv.WaitPod(e.ctx, e.t, e.cs, pod, 30*time.Second, what, ok)
}

var (
	describe           = testenv.Describe
	scheduledCondition = testenv.ScheduledCondition
)

func (e *env) createPod(name string, selector map[string]string, tolerations []v1.Toleration) *v1.Pod {
	e.t.Helper()
	pod := testenv.Pod(e.ns, name, "ballast-scheduler", selector, tolerations)
	pod, err := e.cs.CoreV1().Pods(e.ns).Create(e.ctx, pod, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return pod
}
