package balancer

import (
	"context"
	"strings"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
)

// rawASG is the plain SDK client, for what people and AWS do besides the balancer.
func rawASG(emu *awstest.Server) *autoscaling.Client {
	return autoscaling.New(autoscaling.Options{Region: "us-east-1", BaseEndpoint: awssdk.String(emu.URL),
		Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")})
}

// startTermination terminates an instance the way a scale-in or a human does;
// the balancer's hook holds it in Terminating:Wait.
func (w *world) startTermination(id string) {
	w.t.Helper()
	if _, err := rawASG(w.emu).TerminateInstanceInAutoScalingGroup(w.ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: awssdk.String(id), ShouldDecrementDesiredCapacity: awssdk.Bool(true)}); err != nil {
		w.t.Fatal(err)
	}
	if i, _ := w.emu.Instance(id); i.LifecycleState != awstest.TerminatingWait {
		w.t.Fatalf("instance %s is %s, want %s", id, i.LifecycleState, awstest.TerminatingWait)
	}
}

func (w *world) lifecycleState(id string) string {
	i, _ := w.emu.Instance(id)
	return i.LifecycleState
}

// TestProtectDefersNewNodeBesideHeldOne is defect 5: AWS rejects a whole
// SetInstanceProtection call when one instance is not InService,
// EnteringStandby or Standby (awstest pins it). An unprotected instance held
// in Terminating:Wait holds a volume, a second node needs protection: the
// second is protected in the same loop, the first is reported, and the loop
// succeeds.
func TestProtectDefersNewNodeBesideHeldOne(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	ids := f.emu.CreateGroup(awstest.GroupSpec{Name: "db", Zones: zones[:1], MaxSize: 5, InstanceType: "i3.xlarge", Tags: caTags(nil), Instances: map[string]int{zones[0]: 3}})[zones[0]]
	if err := f.b.cloud.PutLifecycleHook(ctx, f.b.hook("db")); err != nil {
		t.Fatal(err)
	}
	w := &world{fixture: f, t: t, ctx: ctx, ids: ids, rec: &objectRecorder{}}
	w.startTermination(ids[0])
	f.kube = fake.NewClientset(node("n0", zones[0], ids[0]), node("n1", zones[0], ids[1]), node("n2", zones[0], ids[2]),
		localPV("pv0", "n0", v1.VolumeBound), localPV("pv1", "n1", v1.VolumeBound))
	f.b.kube, f.b.recorder = f.kube, w.rec
	if err := f.b.Reconcile(ctx); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if diff := cmp.Diff([]string{ids[1]}, protected(f, "db")); diff != "" {
		t.Errorf("protected instances (-want, +got):\n%s", diff)
	}
	if evs := w.rec.about("Node", "n0", ReasonProtectionDeferred, ids[0], awstest.TerminatingWait); len(evs) != 1 {
		t.Errorf("want one %s event on n0:\n%s", ReasonProtectionDeferred, w.rec.dump())
	}
	if got := annotations(t, f, "n0")[AnnotationScaleInProtectedBy]; got != "" {
		t.Errorf("n0 records scale-in protection %q the balancer could not set", got)
	}
	// It holds a volume: it stays held.
	if got := w.lifecycleState(ids[0]); got != awstest.TerminatingWait {
		t.Errorf("held instance is %s", got)
	}
}

// TestTerminationHeldWhileVolumeNamesInstance is defect 4: the Node object of
// a held instance is deleted (by a human, or a controller that saw it
// NotReady); its bound volume still names the instance, so the hold goes on
// past the heartbeat timeout, and it is reported.
func TestTerminationHeldWhileVolumeNamesInstance(t *testing.T) {
	w := newWorld(t, 2, nil)
	w.startTermination(w.ids[0])
	if err := w.kube.CoreV1().Nodes().Delete(w.ctx, "cass-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for range 4 { // 4 x 2 minutes: well past the 5-minute heartbeat timeout
		w.reconcile()
		w.clock.Step(2 * time.Minute)
	}
	w.reconcile()
	if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
		t.Fatalf("instance %s whose volume pv-0 names it is %s, want %s", w.ids[0], got, awstest.TerminatingWait)
	}
	if evs := w.rec.about("PersistentVolume", "pv-0", ReasonTerminationHeld, w.ids[0]); len(evs) == 0 {
		t.Errorf("no %s event on pv-0:\n%s", ReasonTerminationHeld, w.rec.dump())
	}
	if n := value(t, w.b.metrics.heldTerminations); n != 1 {
		t.Errorf("held_terminations = %v, want 1", n)
	}
}

// staleLists serves the lists made with resourceVersion "0" from a snapshot,
// as a lagging watch cache does; every other read goes to the clientset.
type staleLists struct {
	kubernetes.Interface
	nodes *v1.NodeList
	pvs   *v1.PersistentVolumeList
}

func (s *staleLists) CoreV1() corev1client.CoreV1Interface {
	return staleCore{CoreV1Interface: s.Interface.CoreV1(), s: s}
}

type staleCore struct {
	corev1client.CoreV1Interface
	s *staleLists
}

func (c staleCore) Nodes() corev1client.NodeInterface {
	return staleNodes{NodeInterface: c.CoreV1Interface.Nodes(), s: c.s}
}

func (c staleCore) PersistentVolumes() corev1client.PersistentVolumeInterface {
	return stalePVs{PersistentVolumeInterface: c.CoreV1Interface.PersistentVolumes(), s: c.s}
}

type staleNodes struct {
	corev1client.NodeInterface
	s *staleLists
}

func (n staleNodes) List(ctx context.Context, opts metav1.ListOptions) (*v1.NodeList, error) {
	return staleList(opts, n.s.nodes, func() (*v1.NodeList, error) { return n.NodeInterface.List(ctx, opts) })
}

type stalePVs struct {
	corev1client.PersistentVolumeInterface
	s *staleLists
}

func (p stalePVs) List(ctx context.Context, opts metav1.ListOptions) (*v1.PersistentVolumeList, error) {
	return staleList(opts, p.s.pvs, func() (*v1.PersistentVolumeList, error) { return p.PersistentVolumeInterface.List(ctx, opts) })
}

// staleList answers a list made with resourceVersion "0" with a copy of
// snapshot, and any other with what fresh lists.
func staleList[L interface{ DeepCopy() L }](opts metav1.ListOptions, snapshot L, fresh func() (L, error)) (L, error) {
	if opts.ResourceVersion == "0" {
		return snapshot.DeepCopy(), nil
	}
	return fresh()
}

// TestStaleListLetsNothingGo is defect 3: the watch cache serves a list from
// before the volumes were bound. On that alone the balancer must neither let
// a held termination proceed nor remove a node's annotation or protection.
func TestStaleListLetsNothingGo(t *testing.T) {
	w := newWorld(t, 2, nil)
	nodes, pvs := w.lists()
	for i := range pvs.Items { // as the cache saw them before they were bound
		pvs.Items[i].Spec.ClaimRef, pvs.Items[i].Status.Phase = nil, v1.VolumeAvailable
	}
	w.startTermination(w.ids[0])
	w.b.kube = &staleLists{Interface: w.kube, nodes: nodes, pvs: pvs}
	w.reconcile()

	if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
		t.Errorf("held instance %s is %s after a loop over a stale list, want %s", w.ids[0], got, awstest.TerminatingWait)
	}
	if evs := w.rec.about("Node", "cass-0", ReasonTerminationReleased); len(evs) != 0 {
		t.Errorf("termination released: %v", evs)
	}
	if diff := cmp.Diff(ownAnnotations, annotations(t, w.fixture, "cass-1")); diff != "" {
		t.Errorf("cass-1 annotations after a loop over a stale list (-want, +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{w.ids[1]}, protectedOf(w.fixture, "cassandra", w.ids[1])); diff != "" {
		t.Errorf("cass-1's instance lost its protection (-want, +got):\n%s", diff)
	}
	for _, c := range w.emu.MutatingCalls() {
		if c.Action == "CompleteLifecycleAction" || (c.Action == "SetInstanceProtection" && c.Params.Get("ProtectedFromScaleIn") == "false") {
			t.Errorf("a stale list let go: %s %v", c.Action, c.Params)
		}
	}

	// The fresh list agrees that the volume is gone: then it goes.
	if err := w.kube.CoreV1().PersistentVolumes().Delete(w.ctx, "pv-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.b.kube = w.kube
	w.reconcile()
	if got := annotations(t, w.fixture, "cass-1"); len(got) != 0 {
		t.Errorf("cass-1 annotations once its volume is really gone: %v", got)
	}
}

// protectedOf returns those of ids that are protected.
func protectedOf(f *fixture, group string, ids ...string) []string {
	var out []string
	for _, id := range protected(f, group) {
		for _, want := range ids {
			if id == want {
				out = append(out, id)
			}
		}
	}
	return out
}

// gate holds a call: it says the call entered, then waits until release
// is closed.
type gate struct {
	entered chan struct{}
	release chan struct{}
}

func newGate() gate { return gate{entered: make(chan struct{}, 1), release: make(chan struct{})} }

func (g gate) hold() {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.release
}

// blockingCloud holds DescribeGroups until release is closed.
type blockingCloud struct {
	Cloud
	gate
}

func (c *blockingCloud) DescribeGroups(ctx context.Context, sel asg.Selector) ([]asg.Group, error) {
	c.hold()
	return c.Cloud.DescribeGroups(ctx, sel)
}

// TestHealthAnsweredDuringLoop is defect 6: /healthz answers at once while a
// loop runs (kubelet gives a probe one second).
func TestHealthAnsweredDuringLoop(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	cloud := &blockingCloud{Cloud: f.b.cloud, gate: newGate()}
	f.b.cloud = cloud
	done := make(chan error, 1)
	go func() { done <- f.b.Reconcile(ctx) }()
	<-cloud.entered
	answered := make(chan error, 1)
	go func() { answered <- f.b.Healthy(time.Hour) }()
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return len(answered) > 0, nil
	})
	close(cloud.release)
	if err != nil {
		t.Fatalf("Healthy did not answer while a loop ran: %v", err)
	}
	if err := <-answered; err != nil {
		t.Errorf("Healthy: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Reconcile: %v", err)
	}
}

// TestHealthNeverCompleted: a balancer that leads but never completes a loop
// is unhealthy after maxAge; one that does not lead is not.
func TestHealthNeverCompleted(t *testing.T) {
	f := newFixture(t)
	if err := f.b.Healthy(time.Minute); err != nil {
		t.Errorf("Healthy before running (a standby replica): %v", err)
	}
	f.emu.Inject(awstest.Fault{Action: "DescribeAutoScalingGroups", Code: "AccessDenied", Status: 403, Times: 1 << 20})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { f.b.Run(ctx, 30*time.Second); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return value(t, f.b.metrics.reconciles.WithLabelValues("error")) >= 1, nil
	}); err != nil {
		t.Fatalf("no loop ran: %v", err)
	}
	if err := f.b.Healthy(time.Minute); err != nil {
		t.Errorf("Healthy right after the start: %v", err)
	}
	f.clock.Step(2 * time.Minute)
	if err := f.b.Healthy(time.Minute); err == nil || !strings.Contains(err.Error(), "no loop has completed") {
		t.Errorf("Healthy two minutes after the start without a completed loop: %v, want an error saying so", err)
	}
}

// TestAZRebalanceResumeReportedEachTime: someone resumes AZRebalance again
// and again; each time the balancer finds it resumed, it suspends it and says so.
func TestAZRebalanceResumeReportedEachTime(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.seedCassandra()
	suspended := 0
	for i := range 3 {
		if err := f.b.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{asg.ProcessAZRebalance}, f.emu.Suspended("cassandra")); diff != "" {
			t.Fatalf("loop %d: suspended (-want, +got):\n%s", i, diff)
		}
		for len(f.events.Events) > 0 {
			if e := <-f.events.Events; strings.Contains(e, ReasonSuspendedAZRebalance) {
				suspended++
			}
		}
		if _, err := rawASG(f.emu).ResumeProcesses(ctx, &autoscaling.ResumeProcessesInput{AutoScalingGroupName: awssdk.String("cassandra"),
			ScalingProcesses: []string{asg.ProcessAZRebalance}}); err != nil {
			t.Fatal(err)
		}
	}
	if suspended != 3 {
		t.Errorf("%d %s events for 3 times found resumed, want 3", suspended, ReasonSuspendedAZRebalance)
	}
}

// slowCloud holds DescribeInstances (the orphan step) until release is closed.
type slowCloud struct {
	Cloud
	gate
}

func (c *slowCloud) DescribeInstances(ctx context.Context, ids []string) ([]asg.Instance, error) {
	c.hold()
	return c.Cloud.DescribeInstances(ctx, ids)
}

// TestHeartbeatsDoNotWaitForSlowLoop: a loop stuck in its orphan step (here
// EC2 hangs; in life throttling, a split, thousands of volumes) does not
// keep the held termination from its heartbeats.
func TestHeartbeatsDoNotWaitForSlowLoop(t *testing.T) {
	w := newWorld(t, 2, nil)
	w.startTermination(w.ids[0])
	w.lose(1) // an orphan: the loop asks EC2 about its instance
	slow := &slowCloud{Cloud: w.b.cloud, gate: newGate()}
	w.b.cloud = slow
	ctx, cancel := context.WithCancel(w.ctx)
	stopped := make(chan struct{})
	go func() { w.b.Run(ctx, time.Hour); close(stopped) }()
	defer func() { cancel(); close(slow.release); <-stopped }()
	<-slow.entered

	// The loop's ticker and the heartbeat timer.
	if err := wait.PollUntilContextTimeout(w.ctx, 10*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		return w.clock.Waiters() >= 2, nil
	}); err != nil {
		t.Fatalf("%d timers wait on the clock, want the loop's and the heartbeats': %v", w.clock.Waiters(), err)
	}
	beats := func() int { return w.emu.Counts()["RecordLifecycleActionHeartbeat"] }
	before := beats()
	last := before
	w.clock.Step(w.b.opts.HeartbeatInterval)
	// Heartbeat intervals pass while the loop is stuck, one at a time; the hold lasts.
	if err := wait.PollUntilContextTimeout(w.ctx, 10*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		switch b := beats(); {
		case b >= before+3:
			return true, nil
		case b > last:
			last = b
			w.clock.Step(w.b.opts.HeartbeatInterval)
		}
		return false, nil
	}); err != nil {
		t.Fatalf("%d heartbeats while the loop was stuck, want 3 more than the %d before: %v", beats()-before, before, err)
	}
	if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
		t.Errorf("held instance is %s after %s of a stuck loop, want %s", got, 3*w.b.opts.HeartbeatInterval, awstest.TerminatingWait)
	}
}
