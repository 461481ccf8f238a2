package balancer

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestRecordKeepsTheInstanceThatHoldsTheData is finding 9 of the review of
// issue 11: node cass-0 of instance A is deleted while A's termination is
// held through its volume's instance-id (nothing else names A now), and a
// new instance B registers under the same node name (custom hostnames). The
// volume's record must keep naming A while EC2 still has A, or A is let go
// at the hook's timeout with the data.
func TestRecordKeepsTheInstanceThatHoldsTheData(t *testing.T) {
	w := newWorld(t, 2, nil)
	a := w.ids[0]
	w.startTermination(a)
	if err := w.kube.CoreV1().Nodes().Delete(w.ctx, "cass-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.reconcile()
	b := w.emu.CreateGroup(awstest.GroupSpec{Name: "other", Zones: zones[:1], MaxSize: 1, InstanceType: "i3.xlarge", Instances: map[string]int{zones[0]: 1}})[zones[0]][0]
	if _, err := w.kube.CoreV1().Nodes().Create(w.ctx, node("cass-0", zones[0], b), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for range 5 { // 10 minutes: twice the heartbeat timeout
		w.reconcile()
		w.clock.Step(2 * time.Minute)
	}
	w.reconcile()
	if got := w.volume("pv-0").Annotations[AnnotationInstanceID]; got != a {
		t.Errorf("pv-0 records instance %q, want %s, which holds its data and still exists", got, a)
	}
	if got := w.lifecycleState(a); got != awstest.TerminatingWait {
		t.Errorf("instance %s, on whose disk pv-0 lives, is %s, want %s", a, got, awstest.TerminatingWait)
	}
	if evs := w.rec.about("PersistentVolume", "pv-0", ReasonVolumeNodeReplaced, a, b); len(evs) == 0 {
		t.Errorf("no %s event on pv-0:\n%s", ReasonVolumeNodeReplaced, w.rec.dump())
	}
}

// TestRegionGuardNeedsNodeWitnesses is finding 9b: the balancer runs with
// the credentials of a sibling account in the right region (a wrong role),
// whose groups carry the same cluster tags. The orphan's zone has no live
// node of the cluster, only such a group's instances, which that account's
// EC2 knows; the orphan's instance, unknown to that account, must not be
// taken for gone. Zone names are mapped per account, so only the cluster's
// own nodes (their providerIDs) may witness a zone.
func TestRegionGuardNeedsNodeWitnesses(t *testing.T) {
	w := newWorld(t, 1, after("30m"))
	// The cluster's instance, which this account's EC2 does not know.
	w.annotateVolume("pv-0", map[string]any{AnnotationInstanceID: "i-0000000000000beef"})
	if err := w.kube.CoreV1().Nodes().Delete(w.ctx, "cass-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.loopsApart(31 * time.Minute)
	if d := w.claimDeletes(); len(d) != 0 {
		t.Errorf("claim deleted on the word of another account's group instances: %v", d)
	}
}

// TestOrphanUnknownAfterEC2ForgetsIt: TerminateInstances (API reference):
// "Terminated instances remain visible after termination (for approximately
// one hour)." The emulator forgets them after that hour, so an orphan whose
// delay is longer meets the "unknown to EC2" path with its real instance: in
// a zone a live node of the cluster witnesses, it counts as terminated.
func TestOrphanUnknownAfterEC2ForgetsIt(t *testing.T) {
	w := newWorld(t, 2, after("2h"))
	w.lose(0)
	w.reconcile()
	w.clock.Step(awstest.DefaultForgetAfter + time.Minute)
	insts, err := w.b.cloud.DescribeInstances(w.ctx, []string{w.ids[0]})
	if err != nil || len(insts) != 0 {
		t.Fatalf("EC2 still answers %v, %v for an instance terminated over an hour ago", insts, err)
	}
	w.reconcile()
	if d := w.claimDeletes(); len(d) != 0 {
		t.Fatalf("deleted %v before the delay", d)
	}
	w.clock.Step(time.Hour)
	w.reconcile()
	if d := w.claimDeletes(); len(d) != 1 || d[0] != "data-0 uid=uid-0" {
		t.Errorf("claim deletions %v, want data-0 once its forgotten instance's delay passed", d)
	}
}

// TestPlacementRecordedFirstForHeldInstances is finding 4(b)'s other half:
// the first loop over more than maxPlacementWrites volumes records the
// volumes of instances AWS is terminating first, so that their node can be
// deleted (a drain, kubectl delete node) without leaving the held instance
// unnamed and let go at the hook's timeout.
func TestPlacementRecordedFirstForHeldInstances(t *testing.T) {
	const n = maxPlacementWrites + 5
	f := newFixture(t)
	ids := f.emu.CreateGroup(awstest.GroupSpec{Name: "cassandra", Zones: zones[:1], MaxSize: n, InstanceType: "i3.xlarge",
		Tags: caTags(nil), Instances: map[string]int{zones[0]: n}})[zones[0]]
	if err := f.b.cloud.PutLifecycleHook(context.Background(), f.b.hook("cassandra")); err != nil {
		t.Fatal(err)
	}
	w := &world{fixture: f, t: t, ctx: context.Background(), ids: ids, rec: &objectRecorder{}}
	objs := []runtime.Object{storageClass(nil)}
	for i, id := range ids {
		objs = append(objs, node(fmt.Sprintf("cass-%d", i), zones[0], id), boundVolume(i), boundClaim(i, types.UID(fmt.Sprintf("uid-%d", i))))
	}
	f.kube = fake.NewClientset(objs...)
	f.b.kube, f.b.recorder = f.kube, w.rec
	const last = 99 // pv-99 sorts last
	w.startTermination(ids[last])
	w.reconcile()
	if got := w.volume(fmt.Sprintf("pv-%d", last)).Annotations[AnnotationInstanceID]; got != ids[last] {
		t.Errorf("pv-%d of the held instance records %q after the first loop, want %s", last, got, ids[last])
	}
}
