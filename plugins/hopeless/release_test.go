package hopeless

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
)

// releaseWithin is how soon a change that makes a parked pod placeable must
// bring it back (the queue's own flush would take five minutes).
const releaseWithin = time.Second

// registeredHint returns the hint the plugin registers for action on resource.
func registeredHint(t *testing.T, pl *HopelessPods, resource fwk.EventResource, action fwk.ActionType) fwk.QueueingHintFn {
	t.Helper()
	evs, err := pl.EventsToRegister(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Event.Resource == resource && e.Event.ActionType&action != 0 {
			return e.QueueingHintFn
		}
	}
	t.Fatalf("%s %s is not registered: a parked pod waits for the 5-minute flush", resource, action)
	return nil
}

// bigPod requests cpu (a node of testNode has 4) and carries the two
// NoExecute tolerations the DefaultTolerationSeconds admission adds.
func bigPod(name, cpu string) *v1.Pod {
	secs := int64(300)
	return st.MakePod().Namespace("default").Name(name).UID(name).Req(map[v1.ResourceName]string{v1.ResourceCPU: cpu}).
		Tolerations([]v1.Toleration{
			{Key: v1.TaintNodeNotReady, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute, TolerationSeconds: &secs},
			{Key: v1.TaintNodeUnreachable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute, TolerationSeconds: &secs},
		}).Obj()
}

func resized(pod *v1.Pod, cpu string) *v1.Pod {
	p := pod.DeepCopy()
	p.Spec.Containers[0].Resources.Requests[v1.ResourceCPU] = resource.MustParse(cpu)
	return p
}

// A pending pod resized down through pods/resize: the v1.37.2 queue emits
// UpdatePodScaleDown for it (framework.PodSchedulingPropertiesChange).
func TestPodResizeDownReleases(t *testing.T) {
	pl, _ := newTestPlugin(t, "", testNode("n1", nil))
	logger, _ := ktesting.NewTestContext(t)
	hint := registeredHint(t, pl, fwk.TargetPod, fwk.UpdatePodScaleDown)
	big := bigPod("big", "64")
	for name, tt := range map[string]struct {
		newPod *v1.Pod
		want   fwk.QueueingHint
	}{
		"resized to fit":         {resized(big, "1"), fwk.Queue},
		"resized, still too big": {resized(big, "8"), fwk.QueueSkip},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := hint(logger, big, big, tt.newPod)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("hint (-want, +got):\n%s", diff)
			}
		})
	}
}

// parkViaPreEnqueue creates pod and parks it, as the queue does on Add.
func parkViaPreEnqueue(t *testing.T, pl *HopelessPods, client *fake.Clientset, pod *v1.Pod) {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	if _, err := client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		_, err := pl.view.podLister.Pods(pod.Namespace).Get(pod.Name)
		return err == nil, nil
	}); err != nil {
		t.Fatalf("pod %s never reached the plugin's informer", pod.Name)
	}
	if s := pl.PreEnqueue(ctx, pod); s.Code() != fwk.UnschedulableAndUnresolvable {
		t.Fatalf("PreEnqueue of %s: %v, want it parked", pod.Name, s)
	}
}

func waitActivated(t *testing.T, activator *recordingActivator, key string, within time.Duration) {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	start := time.Now()
	if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, within, true, func(context.Context) (bool, error) {
		return slices.Contains(activator.activated(), key), nil
	}); err != nil {
		t.Fatalf("%s not activated within %v (activated: %v)", key, within, activator.activated())
	}
	t.Logf("%s activated after %v", key, time.Since(start))
}

// Store lag: the queue's listener of the node informer ran before the
// plugin's (two listeners of one informer, in no order), so the pod was
// parked against a store without the node. When the plugin's store catches
// up, the plugin itself brings the pod back.
func TestStoreLagReleases(t *testing.T) {
	pl, client := newTestPlugin(t, "", testNode("w1", map[string]string{"pool": "web"}))
	activator := &recordingActivator{}
	pl.handle.(interface{ SetPodActivator(fwk.PodActivator) }).SetPodActivator(activator)
	_, ctx := ktesting.NewTestContext(t)
	pod := cronPod("report-1")
	parkViaPreEnqueue(t, pl, client, pod)

	fitting := testNode("b1", map[string]string{"pool": "batch"}, v1.Taint{Key: "dedicated", Value: "batchjobs", Effect: v1.TaintEffectNoSchedule})
	if _, err := client.CoreV1().Nodes().Create(ctx, fitting, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitActivated(t, activator, "default/report-1", releaseWithin)
}

// Stale reason: a pod asking for 64 CPUs is parked while every node still
// has a maintenance taint; when the taint goes, the pod stays parked, and
// its condition says the current reason within seconds. (A not-ready taint
// is no reason to park: internal/shapes ignores the taints of starting nodes.)
func TestParkedReasonFollowsTheCluster(t *testing.T) {
	maintenance := v1.Taint{Key: "example.com/maintenance", Effect: v1.TaintEffectNoSchedule}
	pl, client := newTestPlugin(t, "", testNode("n1", nil, maintenance), testNode("n2", nil, maintenance))
	_, ctx := ktesting.NewTestContext(t)
	pod := bigPod("big", "64")
	parkViaPreEnqueue(t, pl, client, pod)

	message := func() string {
		p, err := client.CoreV1().Pods("default").Get(ctx, "big", metav1.GetOptions{})
		if err != nil {
			return ""
		}
		for _, c := range p.Status.Conditions {
			if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse {
				return c.Message
			}
		}
		return ""
	}
	waitMessage := func(substr string) string {
		t.Helper()
		var got string
		if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
			got = message()
			return strings.Contains(got, substr), nil
		}); err != nil {
			t.Fatalf("condition does not say %q: %q", substr, got)
		}
		return got
	}
	got := waitMessage("example.com/maintenance:NoSchedule")
	if strings.Contains(got, "no tolerations") || !strings.Contains(got, "node.kubernetes.io/not-ready:NoExecute") {
		t.Errorf("the message misstates the pod's tolerations: %q", got)
	}

	for _, name := range []string{"n1", "n2"} {
		n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Spec.Taints = nil
		if _, err := client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitMessage("requests cpu=64")
}

// preEnqueueActivator does what the v1.37.2 queue does on Activate: it runs
// PreEnqueue on the activated pod (moveToActiveQ), and records whether the
// pod passed. An activation against a store that still lacks the node would
// park the pod again.
type preEnqueueActivator struct {
	pl     *HopelessPods
	mu     sync.Mutex
	passed []string
}

func (a *preEnqueueActivator) Activate(_ klog.Logger, pods map[string]*v1.Pod) {
	for key, pod := range pods {
		if a.pl.PreEnqueue(context.Background(), pod).IsSuccess() {
			a.mu.Lock()
			a.passed = append(a.passed, key)
			a.mu.Unlock()
		}
	}
}

func (a *preEnqueueActivator) released(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Contains(a.passed, key)
}

// The plugin registers no node event: every registered node event made the
// queue hand the event to each parked pod in turn (4,000 hint calls per node
// of a churning pool). A node that fits brings the pod back through the
// plugin's own node handler, which runs after its store has the node, so
// the pod passes PreEnqueue when the queue re-runs it.
func TestNodeAddReleasesWithoutNodeEvents(t *testing.T) {
	pl, client := newTestPlugin(t, "", testNode("w1", map[string]string{"pool": "web"}))
	evs, err := pl.EventsToRegister(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Event.Resource == fwk.Node || e.Event.Resource == fwk.WildCard {
			t.Errorf("registered %v: the queue walks every parked pod for each node event; release is the node handler's", e.Event)
		}
	}
	activator := &preEnqueueActivator{pl: pl}
	pl.handle.(interface{ SetPodActivator(fwk.PodActivator) }).SetPodActivator(activator)
	_, ctx := ktesting.NewTestContext(t)
	pod := cronPod("report-1")
	parkViaPreEnqueue(t, pl, client, pod)

	fitting := testNode("b1", map[string]string{"pool": "batch"}, v1.Taint{Key: "dedicated", Value: "batchjobs", Effect: v1.TaintEffectNoSchedule})
	if _, err := client.CoreV1().Nodes().Create(ctx, fitting, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, releaseWithin, true, func(context.Context) (bool, error) {
		return activator.released("default/report-1"), nil
	}); err != nil {
		t.Fatalf("the parked pod did not pass PreEnqueue after an activation within %v of the node add", releaseWithin)
	}
}

// Store lag in the other direction: PreEnqueue judged the pod against a
// store without the node, the node reached the store (and its re-check ran,
// finding nothing to release) before the pod was in the parking lot. The
// plugin notices that the store moved while it judged, and checks again.
func TestParkAfterStoreMovedRechecks(t *testing.T) {
	pl, client := newTestPlugin(t, "", testNode("w1", map[string]string{"pool": "web"}))
	activator := &preEnqueueActivator{pl: pl}
	pl.handle.(interface{ SetPodActivator(fwk.PodActivator) }).SetPodActivator(activator)
	_, ctx := ktesting.NewTestContext(t)
	pod := cronPod("report-1")
	if _, err := client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		_, err := pl.view.podLister.Pods(pod.Namespace).Get(pod.Name)
		return err == nil, nil
	}); err != nil {
		t.Fatal("the pod never reached the plugin's informer")
	}
	// PreEnqueue, step by step: the store as it was when judging ...
	judged := pl.storeGenerations()
	v, sig, ok := pl.judge(pod)
	if !ok || !v.Hopeless {
		t.Fatalf("verdict %+v ok=%v, want hopeless", v, ok)
	}
	// ... the node handler updates the store (its re-check finds no parked pod) ...
	fitting := testNode("b1", map[string]string{"pool": "batch"}, v1.Taint{Key: "dedicated", Value: "batchjobs", Effect: v1.TaintEffectNoSchedule})
	pl.store.UpsertNode(fitting)
	// ... and only then is the pod parked.
	pl.parkJudged(pod, sig, v, true, judged)
	if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, releaseWithin, true, func(context.Context) (bool, error) {
		return activator.released("default/report-1"), nil
	}); err != nil {
		t.Fatalf("a pod parked against a store that moved on stayed parked for %v", releaseWithin)
	}
}
