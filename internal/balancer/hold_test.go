package balancer

import (
	"errors"
	"net/http"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/ballast-k8s/ballast/internal/awstest"
)

// The hook's default result is CONTINUE: a held termination that is not
// heartbeated goes ahead at the heartbeat timeout, with the bound volume.
// Finding 4 of the review of issue 11: an error must keep the previous
// decision (hold), never drop the instance from the held set.

// restart makes a new Balancer over the same world, as a restarted pod does:
// it knows no hooks and holds nothing yet.
func (w *world) restart() {
	old := w.b
	w.b = New(old.kube, old.cloud, w.rec, w.clock, old.opts, nil)
}

// loopPastTimeout runs loops, errors allowed, over twice the heartbeat timeout.
func (w *world) loopPastTimeout() {
	for range 5 {
		_ = w.b.Reconcile(w.ctx)
		w.clock.Step(2 * time.Minute)
	}
	_ = w.b.Reconcile(w.ctx)
}

func TestHeldAfterRestartWhileHooksCannotBeDescribed(t *testing.T) {
	w := newWorld(t, 2, nil)
	w.startTermination(w.ids[0])
	w.reconcile()
	w.restart()
	w.emu.Inject(awstest.Fault{Service: "autoscaling", Action: "DescribeLifecycleHooks", Code: "Throttling", Status: http.StatusBadRequest, Times: 1000})
	w.loopPastTimeout()
	if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
		t.Errorf("instance %s, whose node holds a bound volume, is %s after DescribeLifecycleHooks failed for %s, want %s",
			w.ids[0], got, 10*time.Minute, awstest.TerminatingWait)
	}
}

// failQuorumReads makes every list of the clientset fail; staleLists in
// front of it still serves the lists from the watch cache.
func failQuorumReads(w *world, resource string) {
	w.kube.PrependReactor("list", resource, func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("etcd leader election in progress")
	})
}

func TestHeldWhileQuorumReadFails(t *testing.T) {
	w := newWorld(t, 2, nil)
	w.startTermination(w.ids[0])
	w.reconcile()
	nodes, pvs := w.lists()
	for i := range pvs.Items { // a lagging cache: the volumes look unbound
		pvs.Items[i].Spec.ClaimRef, pvs.Items[i].Status.Phase = nil, v1.VolumeAvailable
	}
	failQuorumReads(w, "persistentvolumes")
	w.b.kube = &staleLists{Interface: w.kube, nodes: nodes, pvs: pvs}
	w.loopPastTimeout()
	if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
		t.Errorf("instance %s is %s after its quorum reads failed for %s, want %s", w.ids[0], got, 10*time.Minute, awstest.TerminatingWait)
	}
}

// TestHeldWhenTheListMissesTheNode: the watch cache lags and its list lacks
// the held instance's node, and no volume is annotated with the instance
// yet. The quorum read has the node and its bound volume: hold.
func TestHeldWhenTheListMissesTheNode(t *testing.T) {
	w := newWorld(t, 2, nil)
	w.startTermination(w.ids[0])
	nodes, pvs := w.lists()
	var kept []v1.Node
	for _, n := range nodes.Items {
		if n.Name != "cass-0" {
			kept = append(kept, n)
		}
	}
	nodes.Items = kept
	for i := range pvs.Items {
		delete(pvs.Items[i].Annotations, AnnotationInstanceID)
	}
	w.restart()
	w.b.kube = &staleLists{Interface: w.kube, nodes: nodes, pvs: pvs}
	w.loopPastTimeout()
	if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
		t.Errorf("instance %s is %s after loops whose list missed its node, want %s", w.ids[0], got, awstest.TerminatingWait)
	}
}
