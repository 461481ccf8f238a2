package scheduler

import (
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-base/metrics/legacyregistry"
	testutils "k8s.io/kubernetes/test/integration/util"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

var batchTaint = v1.Taint{Key: "dedicated", Value: "batch", Effect: v1.TaintEffectNoSchedule}

// wrongToleration is the incident's CronJob: it tolerates dedicated=batchjobs,
// the pool is tainted dedicated=batch.
var wrongToleration = []v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "batchjobs", Effect: v1.TaintEffectNoSchedule}}

func TestHopelessPods(t *testing.T) {
	server := testutils.InitTestAPIServer(t, "ballast", nil)

	t.Run("wrong toleration is parked, then fixed or given a node", func(t *testing.T) {
		testCtx := testutils.WithNewNamespace(t, server, "toleration")
		ctx, cs, ns := testCtx.Ctx, testCtx.ClientSet, testCtx.NS.Name
		defer testutils.CleanupNodes(cs, t)
		for _, n := range []*v1.Node{
			testenv.Node("batch-1", map[string]string{"pool": "batch"}, []v1.Taint{batchTaint}),
			testenv.Node("web-1", map[string]string{"pool": "web"}, nil),
			testenv.Node("web-2", map[string]string{"pool": "web"}, nil),
		} {
			if _, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		startScheduler(t, testCtx, "secondary-profile.yaml", nil)

		var cron []*v1.Pod
		for _, name := range []string{"report-1", "report-2", "report-3"} {
			p, err := cs.CoreV1().Pods(ns).Create(ctx, makePod(ns, name, "ballast-scheduler", map[string]string{"pool": "batch"}, wrongToleration), metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cron = append(cron, p)
		}
		// The pod also tolerates what admission adds (the NoExecute defaults).
		const want = "no node or node group tolerates taint dedicated=batch:NoSchedule (pod tolerates dedicated=batchjobs:NoSchedule"
		for _, p := range cron {
			got := waitCondition(ctx, t, testCtx, p, 20*time.Second, "parked", parkedWith(want))
			if c := scheduledCondition(got); c.Reason != v1.PodReasonUnschedulable || !testenv.ParkedByBallast(got) {
				t.Errorf("condition of %s: reason %q message %q", p.Name, c.Reason, c.Message)
			}
		}
		if parked := testenv.Gathered(t, legacyregistry.DefaultGatherer, "ballast_hopeless_parked_pods", "reason", "taint"); parked < 3 {
			t.Errorf("ballast_hopeless_parked_pods{reason=taint} = %v, want >= 3", parked)
		}

		// The user fixes the CronJob: the next pod has the right toleration.
		fixed, err := cs.CoreV1().Pods(ns).Create(ctx, makePod(ns, "report-fixed", "ballast-scheduler", map[string]string{"pool": "batch"},
			[]v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "batch", Effect: v1.TaintEffectNoSchedule}}), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		waitCondition(ctx, t, testCtx, fixed, 10*time.Second, "bound", bound)
		t.Logf("fixed pod bound in %v", time.Since(start))

		// Or a node that the parked pods tolerate appears: they leave the
		// parking within seconds, without waiting for the 5-minute flush.
		start = time.Now()
		if _, err := cs.CoreV1().Nodes().Create(ctx, testenv.Node("batch-jobs-1", map[string]string{"pool": "batch"},
			[]v1.Taint{{Key: "dedicated", Value: "batchjobs", Effect: v1.TaintEffectNoSchedule}}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, p := range cron {
			got := waitCondition(ctx, t, testCtx, p, 10*time.Second, "bound after a fitting node appeared", bound)
			if got.Spec.NodeName != "batch-jobs-1" {
				t.Errorf("%s bound to %s, want batch-jobs-1", p.Name, got.Spec.NodeName)
			}
		}
		t.Logf("parked pods bound %v after the node appeared", time.Since(start))

		// One event per pod, not one per attempt.
		for _, p := range cron {
			if n := hopelessEvents(ctx, t, testCtx, p); n != 1 {
				t.Errorf("pod %s has %d Hopeless events, want exactly 1", p.Name, n)
			}
		}
	})

	t.Run("node-group templates keep scale-from-zero pods unparked; malformed ConfigMap fails open", func(t *testing.T) {
		testCtx := testutils.WithNewNamespace(t, server, "templates")
		ctx, cs, ns := testCtx.Ctx, testCtx.ClientSet, testCtx.NS.Name
		defer testutils.CleanupNodes(cs, t)
		if _, err := cs.CoreV1().Nodes().Create(ctx, testenv.Node("web-1", map[string]string{"pool": "web"}, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		data, err := nodegroups.Encode(&nodegroups.NodeGroupList{GeneratedAt: &now, Source: "test", NodeGroups: []nodegroups.NodeGroup{{
			Name: "gpu-us-east-1a", Zone: "us-east-1a", MaxSize: 5, CurrentSize: 0,
			Labels:      map[string]string{"pool": "gpu"},
			Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("8"), v1.ResourceMemory: resource.MustParse("32Gi")},
			// Another node the group may launch: a pod only it hosts is not parked.
			Variants: []nodegroups.Variant{{Labels: map[string]string{"pool": "gpu", "accelerator": "h100"},
				Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("8"), v1.ResourceMemory: resource.MustParse("32Gi")}}},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		cm := &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "node-groups"}, Data: data}
		if cm, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		startScheduler(t, testCtx, "autoscaling-profile.yaml", map[string]any{
			"autoscaling": true, "nodeGroupsConfigMap": map[string]string{"namespace": ns, "name": "node-groups"}, "maxTemplateAge": "10m"})

		gpu, _ := cs.CoreV1().Pods(ns).Create(ctx, makePod(ns, "trainer", "ballast-scheduler", map[string]string{"pool": "gpu"}, nil), metav1.CreateOptions{})
		lost, _ := cs.CoreV1().Pods(ns).Create(ctx, makePod(ns, "lost", "ballast-scheduler", map[string]string{"pool": "tpu"}, nil), metav1.CreateOptions{})
		waitCondition(ctx, t, testCtx, lost, 20*time.Second, "parked", parkedWith("nodeSelector pool=tpu"))
		// The template pod gets the scheduler's own verdict, never ours:
		// cluster-autoscaler sees an ordinary unschedulable pod and scales up.
		got := waitCondition(ctx, t, testCtx, gpu, 20*time.Second, "unschedulable", func(p *v1.Pod) bool {
			c := scheduledCondition(p)
			return c != nil && c.Status == v1.ConditionFalse
		})
		if c := scheduledCondition(got); strings.Contains(c.Message, "hopeless") {
			t.Fatalf("a pod that a node-group template fits was parked: %s", c.Message)
		}
		h100, _ := cs.CoreV1().Pods(ns).Create(ctx, makePod(ns, "h100", "ballast-scheduler", map[string]string{"accelerator": "h100"}, nil), metav1.CreateOptions{})
		got = waitCondition(ctx, t, testCtx, h100, 20*time.Second, "unschedulable", func(p *v1.Pod) bool {
			c := scheduledCondition(p)
			return c != nil && c.Status == v1.ConditionFalse
		})
		if c := scheduledCondition(got); strings.Contains(c.Message, "hopeless") {
			t.Fatalf("a pod that only a variant of a node group fits was parked: %s", c.Message)
		}

		// A broken ConfigMap: reported, and nothing is parked any more.
		cm.Data = map[string]string{nodegroups.DataKey: "apiVersion: ballast.k8s.io/v1alpha1\nkind: NodeGroupList\nnodeGroups:\n- name: x\n  maxSize: -1\n"}
		if _, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, testCtx, "InvalidNodeGroups", "nodeGroups[0].maxSize")
		// The parked pod is let go (fail open): the scheduler tries it again and writes its own verdict.
		waitCondition(ctx, t, testCtx, lost, 20*time.Second, "released by fail-open", func(p *v1.Pod) bool {
			c := scheduledCondition(p)
			return c != nil && !strings.Contains(c.Message, "hopeless")
		})
		fresh, _ := cs.CoreV1().Pods(ns).Create(ctx, makePod(ns, "lost-2", "ballast-scheduler", map[string]string{"pool": "tpu"}, nil), metav1.CreateOptions{})
		got = waitCondition(ctx, t, testCtx, fresh, 20*time.Second, "unschedulable", func(p *v1.Pod) bool {
			c := scheduledCondition(p)
			return c != nil && c.Status == v1.ConditionFalse
		})
		if c := scheduledCondition(got); strings.Contains(c.Message, "hopeless") {
			t.Fatalf("with a malformed ConfigMap the plugin must park nothing, got %s", c.Message)
		}
	})

	t.Run("local PV bound to a node that is gone", func(t *testing.T) {
		testCtx := testutils.WithNewNamespace(t, server, "localpv")
		ctx, cs, ns := testCtx.Ctx, testCtx.ClientSet, testCtx.NS.Name
		defer testutils.CleanupNodes(cs, t)
		defer cs.CoreV1().PersistentVolumes().Delete(ctx, "local-pv-gone", metav1.DeleteOptions{})
		if _, err := cs.CoreV1().Nodes().Create(ctx, testenv.Node("ip-10-0-1-1", nil, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		bindLocalVolume(t, testCtx, "data-cassandra-0", "local-pv-gone", "ip-10-0-9-9")
		startScheduler(t, testCtx, "secondary-profile.yaml", nil)
		pod := makePod(ns, "cassandra-0", "ballast-scheduler", nil, nil)
		pod.Spec.Volumes = []v1.Volume{{Name: "data", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "data-cassandra-0"}}}}
		pod, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitCondition(ctx, t, testCtx, pod, 20*time.Second, "parked", parkedWith("PersistentVolume local-pv-gone bound to claim data-cassandra-0 requires kubernetes.io/hostname In [ip-10-0-9-9]"))
	})
}
