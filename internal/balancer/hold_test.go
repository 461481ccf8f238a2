package balancer

import (
	"errors"
	"net/http"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"

	"github.com/ballast-k8s/ballast/internal/asg"
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

// throttle makes the Auto Scaling actions fail for good: Throttling, past
// the SDK's retries.
func (w *world) throttle(actions ...string) {
	for _, a := range actions {
		w.emu.Inject(awstest.Fault{Service: "autoscaling", Action: a, Code: "Throttling", Status: http.StatusBadRequest, Times: 1000})
	}
}

// restartCases are the two ways a held termination meets a failing call:
// held by a loop, then the balancer restarts and the calls fail; or the
// termination starts while they fail.
var restartCases = []struct {
	name    string
	restart bool
}{{"held, then a restart", true}, {"termination starts while the describes fail", false}}

// terminateWhileFailing starts the termination of cass-0's instance around
// the actions' failing for good (throttle), the one way or the other of
// restartCases, and loops past the hook's timeout.
func (w *world) terminateWhileFailing(restart bool, actions ...string) {
	if restart {
		w.startTermination(w.ids[0])
		w.reconcile()
		w.restart()
	}
	w.throttle(actions...)
	if !restart {
		w.startTermination(w.ids[0])
	}
	w.loopPastTimeout()
}

// leaveDiscovery sets the group's enabled tag to "True", which
// cluster-autoscaler's discovery (and the balancer's) does not match: the
// group leaves discovery, its hook stays.
func (w *world) leaveDiscovery() {
	w.t.Helper()
	if _, err := rawASG(w.emu).CreateOrUpdateTags(w.ctx, &autoscaling.CreateOrUpdateTagsInput{Tags: []astypes.Tag{{
		ResourceId: awssdk.String("cassandra"), ResourceType: awssdk.String("auto-scaling-group"),
		Key: awssdk.String(asg.TagAutoDiscoveryEnabled), Value: awssdk.String("True"), PropagateAtLaunch: awssdk.Bool(false),
	}}}); err != nil {
		w.t.Fatal(err)
	}
}

func TestHeldAfterRestartWhileHooksCannotBeDescribed(t *testing.T) {
	w := newWorld(t, 2, nil)
	w.terminateWhileFailing(true, "DescribeLifecycleHooks")
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
