package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/kubernetes/pkg/scheduler"
	testutils "k8s.io/kubernetes/test/integration/util"

	"github.com/ballast-k8s/ballast/plugins"
)

// repoRoot is the module root, from this file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// loadProfile reads a sample config through the scheduler's own option
// parsing, and overrides the HopelessPods args when args is not nil.
func loadProfile(t *testing.T, sample string, args map[string]any) *options.Options {
	t.Helper()
	cfg, err := options.LoadConfigFromFile(klog.Background(), filepath.Join(repoRoot(), "config", "samples", sample))
	if err != nil {
		t.Fatalf("loading %s: %v", sample, err)
	}
	if args != nil {
		raw, _ := json.Marshal(args)
		for i := range cfg.Profiles[0].PluginConfig {
			if cfg.Profiles[0].PluginConfig[i].Name == "HopelessPods" {
				cfg.Profiles[0].PluginConfig[i].Args = &k8sruntime.Unknown{Raw: raw, ContentType: k8sruntime.ContentTypeJSON}
			}
		}
	}
	return &options.Options{ComponentConfig: cfg}
}

// startScheduler runs a scheduler with Ballast's plugins and the profile of
// the sample, in the test's namespace context, until the test ends.
func startScheduler(t *testing.T, testCtx *testutils.TestContext, sample string, args map[string]any) {
	t.Helper()
	opts := loadProfile(t, sample, args)
	testutils.InitTestSchedulerWithOptions(t, testCtx, 0,
		scheduler.WithProfiles(opts.ComponentConfig.Profiles...),
		scheduler.WithFrameworkOutOfTreeRegistry(plugins.Registry()),
		scheduler.WithPodInitialBackoffSeconds(1),
		scheduler.WithPodMaxBackoffSeconds(1))
	testutils.SyncSchedulerInformerFactory(testCtx)
	go testCtx.Scheduler.Run(testCtx.SchedulerCtx)
	t.Cleanup(testCtx.SchedulerCloseFn)
}

func makeNode(name string, labels map[string]string, taints []v1.Taint, cpu string) *v1.Node {
	l := map[string]string{v1.LabelHostname: name}
	for k, v := range labels {
		l[k] = v
	}
	alloc := v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse("16Gi"), v1.ResourcePods: resource.MustParse("110")}
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
		Spec:       v1.NodeSpec{Taints: taints},
		Status: v1.NodeStatus{Capacity: alloc, Allocatable: alloc,
			Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}},
	}
}

func makePod(ns, name, schedulerName string, selector map[string]string, tolerations []v1.Toleration) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"job-name": "report"}},
		Spec: v1.PodSpec{
			SchedulerName: schedulerName,
			NodeSelector:  selector,
			Tolerations:   tolerations,
			Containers: []v1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10",
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m")}}}},
		},
	}
}

// waitCondition waits until the pod's PodScheduled condition satisfies ok.
func waitCondition(ctx context.Context, t *testing.T, testCtx *testutils.TestContext, pod *v1.Pod, timeout time.Duration, what string, ok func(*v1.Pod) bool) *v1.Pod {
	t.Helper()
	var last *v1.Pod
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := testCtx.ClientSet.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return ok(p), nil
	})
	if err != nil {
		t.Fatalf("pod %s: waiting for %s: %v; last status: %s", pod.Name, what, err, describe(last))
	}
	return last
}

func describe(p *v1.Pod) string {
	if p == nil {
		return "<none>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "node=%q", p.Spec.NodeName)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, " %s=%s(%s: %s)", c.Type, c.Status, c.Reason, c.Message)
	}
	return b.String()
}

func scheduledCondition(p *v1.Pod) *v1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == v1.PodScheduled {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func bound(p *v1.Pod) bool { return p.Spec.NodeName != "" }

func parkedWith(substr string) func(*v1.Pod) bool {
	return func(p *v1.Pod) bool {
		c := scheduledCondition(p)
		return c != nil && c.Status == v1.ConditionFalse && strings.Contains(c.Message, substr)
	}
}

// hopelessEvents counts the Hopeless events about a pod.
func hopelessEvents(ctx context.Context, t *testing.T, testCtx *testutils.TestContext, pod *v1.Pod) int {
	t.Helper()
	evs, err := testCtx.ClientSet.EventsV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs.Items {
		if e.Regarding.Name == pod.Name && e.Reason == "Hopeless" {
			n++
			if e.DeprecatedCount > 1 || (e.Series != nil && e.Series.Count > 1) {
				n += 1000
			}
		}
	}
	return n
}

// gatheredValue reads a gauge or counter from the scheduler's /metrics registry.
func gatheredValue(t *testing.T, name, label, value string) float64 {
	t.Helper()
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Gauge != nil:
				total += m.GetGauge().GetValue()
			case m.Counter != nil:
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// waitEvent waits for an event with reason whose note contains substr.
func waitEvent(t *testing.T, testCtx *testutils.TestContext, reason, substr string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(testCtx.Ctx, 200*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := testCtx.ClientSet.EventsV1().Events(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, e := range evs.Items {
			if e.Reason == reason && strings.Contains(e.Note, substr) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s event mentioning %q: %v", reason, substr, err)
	}
}

// bindLocalVolume creates a local PV pinned to host and a claim bound to it,
// as the local static provisioner and the PV controller leave them.
func bindLocalVolume(t *testing.T, testCtx *testutils.TestContext, claim, pvName, host string) {
	t.Helper()
	ctx, cs, ns := testCtx.Ctx, testCtx.ClientSet, testCtx.NS.Name
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: claim, Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
		Spec: v1.PersistentVolumeClaimSpec{
			AccessModes:      []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			StorageClassName: ptrTo("local-storage"),
			VolumeName:       pvName,
			Resources:        v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("10Gi")}},
		},
	}
	pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pvc.Status = v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound, AccessModes: pvc.Spec.AccessModes, Capacity: pvc.Spec.Resources.Requests}
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName},
		Spec: v1.PersistentVolumeSpec{
			Capacity:                      v1.ResourceList{v1.ResourceStorage: resource.MustParse("10Gi")},
			AccessModes:                   []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: v1.PersistentVolumeReclaimRetain,
			StorageClassName:              "local-storage",
			PersistentVolumeSource:        v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: "/mnt/disks/ssd0"}},
			ClaimRef:                      &v1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: ns, Name: claim, UID: pvc.UID},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{host}}}}}}},
		},
	}
	pv, err = cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pv.Status = v1.PersistentVolumeStatus{Phase: v1.VolumeBound}
	if _, err := cs.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func ptrTo[T any](v T) *T { return &v }
