package hopeless

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/defaultbinder"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/queuesort"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

var batchTaint = v1.Taint{Key: "dedicated", Value: "batch", Effect: v1.TaintEffectNoSchedule}

func testNode(name string, labels map[string]string, taints ...v1.Taint) *v1.Node {
	l := map[string]string{v1.LabelHostname: name}
	for k, v := range labels {
		l[k] = v
	}
	alloc := v1.ResourceList{v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("16Gi"), v1.ResourcePods: resource.MustParse("110")}
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}, Spec: v1.NodeSpec{Taints: taints}, Status: v1.NodeStatus{Allocatable: alloc}}
}

// cronPod is the incident's pod: pool=batch, tolerates dedicated=batchjobs.
func cronPod(name string) *v1.Pod {
	return st.MakePod().Namespace("default").Name(name).UID(name).NodeSelector(map[string]string{"pool": "batch"}).
		Tolerations([]v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "batchjobs", Effect: v1.TaintEffectNoSchedule}}).
		Req(map[v1.ResourceName]string{v1.ResourceCPU: "100m"}).Obj()
}

// newTestPlugin builds the plugin on a real framework handle over a fake
// clientset holding objs, and waits until its view is synced.
func newTestPlugin(t testing.TB, args string, objs ...runtime.Object) (*HopelessPods, *fake.Clientset) {
	t.Helper()
	schedmetrics.Register()
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	client := fake.NewClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	profile := &config.KubeSchedulerProfile{SchedulerName: "test", Plugins: &config.Plugins{
		QueueSort: config.PluginSet{Enabled: []config.Plugin{{Name: queuesort.Name}}},
		Bind:      config.PluginSet{Enabled: []config.Plugin{{Name: defaultbinder.Name}}},
	}}
	registry := frameworkruntime.Registry{queuesort.Name: queuesort.New, defaultbinder.Name: defaultbinder.New}
	fh, err := frameworkruntime.NewFramework(ctx, registry, profile,
		frameworkruntime.WithClientSet(client), frameworkruntime.WithInformerFactory(factory),
		frameworkruntime.WithEventRecorder(events.NewFakeRecorder(100)))
	if err != nil {
		t.Fatal(err)
	}
	var obj runtime.Object
	if args != "" {
		obj = &runtime.Unknown{Raw: []byte(args), ContentType: runtime.ContentTypeJSON}
	}
	p, err := New(ctx, obj, fh)
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	pl := p.(*HopelessPods)
	if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return pl.view.synced(), nil
	}); err != nil {
		t.Fatalf("the plugin's view did not sync: %v", err)
	}
	return pl, client
}

// A node change releases the parked pods of exactly the signatures it makes
// fit, through the plugin's node handler (no node event is registered).
func TestNodeChangeReleases(t *testing.T) {
	pool := map[string]string{"pool": "batch"}
	fitting := v1.Taint{Key: "dedicated", Value: "batchjobs", Effect: v1.TaintEffectNoSchedule}
	tests := []struct {
		name     string
		old, new *v1.Node
		want     bool
	}{
		{"new node of the pool, wrong taint", nil, testNode("b2", pool, batchTaint), false},
		{"new node of another pool", nil, testNode("w2", map[string]string{"pool": "web"}), false},
		{"new node the pod tolerates", nil, testNode("b3", pool, fitting), true},
		{"taint changed to a tolerated one", testNode("b1", pool, batchTaint), testNode("b1", pool, fitting), true},
		{"label added that the pod selects", testNode("x", nil, fitting), testNode("x", pool, fitting), true},
		{"allocatable shrunk below the request", nil, func() *v1.Node {
			n := testNode("tiny", pool, fitting)
			n.Status.Allocatable[v1.ResourceCPU] = resource.MustParse("50m")
			return n
		}(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := []runtime.Object{testNode("w1", map[string]string{"pool": "web"})}
			if tt.old != nil {
				objs = append(objs, tt.old)
			}
			pl, client := newTestPlugin(t, "", objs...)
			activator := &recordingActivator{}
			pl.handle.(interface{ SetPodActivator(fwk.PodActivator) }).SetPodActivator(activator)
			report, other := cronPod("report-1"), cronPod("other")
			other.Spec.Tolerations = nil
			parkViaPreEnqueue(t, pl, client, report)
			parkViaPreEnqueue(t, pl, client, other)
			logger, _ := ktesting.NewTestContext(t)
			var old interface{}
			if tt.old != nil {
				old = tt.old
			}
			// What the node informer hands the plugin's handler.
			pl.view.upsertNode(old, tt.new)
			pl.recheckParked(logger)
			if tt.want {
				waitActivated(t, activator, "default/report-1", releaseWithin)
			} else if _, parked := pl.lot.get(report.UID); !parked {
				t.Errorf("the node released the pod: activated %v", activator.activated())
			}
			// The other signature fits no node here.
			if _, parked := pl.lot.get(other.UID); !parked || slices.Contains(activator.activated(), "default/other") {
				t.Errorf("a pod of another signature was released: activated %v", activator.activated())
			}
		})
	}
}

func TestPodHints(t *testing.T) {
	pl, _ := newTestPlugin(t, "", testNode("b1", map[string]string{"pool": "batch"}, batchTaint))
	logger, _ := ktesting.NewTestContext(t)
	pod := cronPod("report")
	fixed := pod.DeepCopy()
	fixed.Spec.Tolerations = append(fixed.Spec.Tolerations, v1.Toleration{Key: "dedicated", Operator: v1.TolerationOpExists})
	stillWrong := pod.DeepCopy()
	stillWrong.Spec.Tolerations = append(stillWrong.Spec.Tolerations, v1.Toleration{Key: "other", Operator: v1.TolerationOpExists})
	for name, tt := range map[string]struct {
		newPod *v1.Pod
		want   fwk.QueueingHint
	}{
		"toleration that fixes it": {fixed, fwk.Queue},
		"toleration that does not": {stillWrong, fwk.QueueSkip},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := pl.isSchedulableAfterPodChange(logger, pod, pod, tt.newPod)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("hint (-want, +got):\n%s", diff)
			}
		})
	}
}

// recordingActivator records what the view activates.
type recordingActivator struct {
	mu  sync.Mutex
	got []string
}

func (r *recordingActivator) Activate(_ klog.Logger, pods map[string]*v1.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range pods {
		r.got = append(r.got, k)
	}
}

func (r *recordingActivator) activated() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]string(nil), r.got...)
	sort.Strings(out)
	return out
}

// TestClaimIndexActivates: a StatefulSet recreates the claim of a pod parked
// for a local PV on a gone node; the view activates that pod, and only it.
func TestClaimIndexActivates(t *testing.T) {
	pl, client := newTestPlugin(t, "", testNode("n1", nil))
	activator := &recordingActivator{}
	pl.handle.(interface{ SetPodActivator(fwk.PodActivator) }).SetPodActivator(activator)
	_, ctx := ktesting.NewTestContext(t)
	withClaim := func(name, claim string) *v1.Pod {
		p := st.MakePod().Namespace("default").Name(name).UID(name).Obj()
		p.Spec.Volumes = []v1.Volume{{Name: "d", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}}
		return p
	}
	a, b := withClaim("cassandra-0", "data-cassandra-0"), withClaim("cassandra-1", "data-cassandra-1")
	for _, p := range []*v1.Pod{a, b} {
		if _, err := client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pl.park(p, 0, shapesVerdict(), true)
	}
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := pl.view.podLister.Pods("default").Get("cassandra-1")
		return err == nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	claim := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "data-cassandra-0"}}
	if _, err := client.CoreV1().PersistentVolumeClaims("default").Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return len(activator.activated()) > 0, nil
	}); err != nil {
		t.Fatal("the pod of the recreated claim was not activated")
	}
	if diff := cmp.Diff([]string{"default/cassandra-0"}, activator.activated()); diff != "" {
		t.Errorf("activated (-want, +got):\n%s", diff)
	}
	pl.unpark(a.UID)
	if got := pl.lot.ofClaim("default/data-cassandra-0"); len(got) != 0 {
		t.Errorf("claim index keeps an unparked pod: %v", got)
	}
}

func shapesVerdict() shapes.Verdict {
	return shapes.Verdict{Hopeless: true, Reason: shapes.ReasonVolumeNodeAffinity, Message: "hopeless: test"}
}

func TestEventsToRegisterHaveHints(t *testing.T) {
	pl, _ := newTestPlugin(t, "")
	evs, err := pl.EventsToRegister(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.QueueingHintFn == nil {
			t.Errorf("event %v has no QueueingHintFn", e.Event)
		}
		if e.Event.Resource == fwk.Node && e.Event.ActionType&fwk.Delete != 0 {
			t.Errorf("a node deletion can never make a pod schedulable, but it is registered")
		}
		// Each registered event makes the queue visit every parked pod.
		if e.Event.Resource == fwk.PersistentVolume || e.Event.Resource == fwk.PersistentVolumeClaim {
			t.Errorf("%v is registered; claims and volumes are handled by the view's index", e.Event)
		}
	}
}

func TestPreEnqueueAndPreFilter(t *testing.T) {
	pl, client := newTestPlugin(t, `{"narrowFilter":true}`,
		testNode("b1", map[string]string{"pool": "batch"}, batchTaint),
		testNode("gpu-1", map[string]string{"pool": "gpu"}),
		testNode("w1", map[string]string{"pool": "web"}), testNode("w2", map[string]string{"pool": "web"}))
	_, ctx := ktesting.NewTestContext(t)
	state := framework.NewCycleState()

	hopeless := cronPod("report-1")
	if _, err := client.CoreV1().Pods("default").Create(ctx, hopeless, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	status := pl.PreEnqueue(ctx, hopeless)
	if status.Code() != fwk.UnschedulableAndUnresolvable || !strings.Contains(status.Message(), "tolerates taint dedicated=batch:NoSchedule") {
		t.Fatalf("PreEnqueue of a hopeless pod: %v", status)
	}
	if _, s := pl.PreFilter(ctx, state, hopeless, nil); s.Code() != fwk.UnschedulableAndUnresolvable {
		t.Fatalf("PreFilter of a hopeless pod: %v", s)
	}
	if got := pl.lot.len(); got != 1 {
		t.Fatalf("parked %d pods, want 1", got)
	}

	gpu := st.MakePod().Namespace("default").Name("trainer").UID("trainer").NodeSelector(map[string]string{"pool": "gpu"}).Obj()
	if s := pl.PreEnqueue(ctx, gpu); !s.IsSuccess() {
		t.Fatalf("PreEnqueue of a feasible pod: %v", s)
	}
	res, s := pl.PreFilter(ctx, state, gpu, nil)
	if !s.IsSuccess() || res == nil {
		t.Fatalf("PreFilter of a feasible pod: %v %v", res, s)
	}
	if diff := cmp.Diff(sets.New("gpu-1"), res.NodeNames); diff != "" {
		t.Errorf("narrowed nodes (-want, +got):\n%s", diff)
	}

	// Once the store has a node that fits, the pod passes both and is no
	// longer counted as parked.
	pl.store.UpsertNode(testNode("b9", map[string]string{"pool": "batch"}, v1.Taint{Key: "dedicated", Value: "batchjobs", Effect: v1.TaintEffectNoSchedule}))
	if s := pl.PreEnqueue(ctx, hopeless); !s.IsSuccess() {
		t.Fatalf("PreEnqueue with a fitting node: %v", s)
	}
	if _, s := pl.PreFilter(ctx, state, hopeless, nil); !s.IsSuccess() {
		t.Fatalf("PreFilter with a fitting node: %v", s)
	}
	if pl.lot.len() != 0 {
		t.Fatalf("a pod let through must not count as parked")
	}
}

func TestNewRejectsMalformedArgs(t *testing.T) {
	schedmetrics.Register()
	for _, raw := range []string{`{"maxTemplateAge":"-1s"}`, `{"bogus":1}`} {
		_, ctx := ktesting.NewTestContext(t)
		_, err := New(ctx, &runtime.Unknown{Raw: []byte(raw), ContentType: runtime.ContentTypeJSON}, nil)
		if err == nil {
			t.Errorf("New accepted %s", raw)
		}
	}
}

// BenchmarkVerdict measures one verdict against clusters of 500 to 5000
// nodes in 20 shapes: uncached (a new signature) and cached. It must be flat
// in the node count.
func BenchmarkVerdict(b *testing.B) {
	for _, nodes := range []int{500, 2000, 5000} {
		var objs []runtime.Object
		for i := 0; i < nodes; i++ {
			objs = append(objs, testNode(fmt.Sprintf("n-%d", i), map[string]string{"pool": fmt.Sprintf("p%d", i%20)}))
		}
		pl, _ := newTestPlugin(b, "", objs...)
		if _, shapes, _ := pl.store.Counts(); shapes != 20 {
			b.Fatalf("want 20 shapes, got %d", shapes)
		}
		b.Run(fmt.Sprintf("nodes=%d/uncached", nodes), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				pod := cronPod("p")
				pod.Spec.Containers[0].Resources.Requests[v1.ResourceMemory] = *resource.NewQuantity(int64(i+1), resource.BinarySI)
				if v, _ := pl.verdict(pod); !v.Hopeless {
					b.Fatal("want hopeless")
				}
			}
		})
		b.Run(fmt.Sprintf("nodes=%d/cached", nodes), func(b *testing.B) {
			pod := cronPod("p")
			for i := 0; i < b.N; i++ {
				if v, _ := pl.verdict(pod); !v.Hopeless {
					b.Fatal("want hopeless")
				}
			}
		})
	}
}
