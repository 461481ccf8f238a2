package balancer

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestHeldWhenTheGroupLeavesDiscovery (review 11): a termination held
// because the instance's node holds a bound local volume is dropped from the
// held set as soon as its group is no longer discovered: an operator takes
// the group out of cluster-autoscaler (enabled=false), or mistypes the tag
// (True). lifecycleActions walks only the discovered groups and
// b.held.replace drops the rest, so nothing heartbeats the instance and the
// balancer's own hook, still on the group, lets it go at its timeout with
// DefaultResult CONTINUE (API LifecycleHook, HeartbeatTimeout: "If the
// lifecycle hook times out, Amazon EC2 Auto Scaling performs the action that
// you specified in the DefaultResult property"). A tag is bad input: it must never
// let an instance with a bound local volume be terminated. (The shipped IAM
// policy also denies the heartbeat there: its condition requires
// enabled=true on RecordLifecycleActionHeartbeat.)
//
// Across a restart (leader failover, upgrade, OOM kill) the in-memory held
// set is empty: the volumes record their instance
// (ballast.k8s.io/instance-id), and DescribeAutoScalingInstances answers for
// an instance in any group ("Gets information about the Auto Scaling
// instances in the account and Region"), so the balancer finds it again.
func TestHeldWhenTheGroupLeavesDiscovery(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "same process", true: "across a restart"}[restart], func(t *testing.T) {
			w := newWorld(t, 2, nil)
			w.startTermination(w.ids[0])
			w.reconcile()
			if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
				t.Fatalf("instance %s is %s after a loop, want held", w.ids[0], got)
			}
			w.leaveDiscovery()
			if restart {
				w.restart()
			}
			w.loopPastTimeout()
			if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
				t.Errorf("instance %s, whose node holds a bound local volume, is %s once its group's enabled tag read \"True\" (restart: %v), want %s",
					w.ids[0], got, restart, awstest.TerminatingWait)
			}
		})
	}
}

// TestOrphanMalformedInstanceIDNeverReleases (review 11): an orphan's
// instance-id annotation is bad input once it is not an instance ID at all
// (edited by hand, mangled by a tool). The client asks DescribeInstances
// with an instance-id filter, which matches nothing rather than failing
// (API_DescribeInstances: "If you specify filters, the output includes
// information for only those instances that meet the filter criteria"; only
// InstanceIds fail: "If you specify an instance ID that is not valid, an
// error is returned"), so "i-bogus" is "unknown to EC2". In a zone another
// node witnesses, unknown counts as terminated, and the claim is deleted
// although the volume's real instance still runs (its node was deleted with
// `kubectl delete node`). The same page also says unknown is not proof of
// termination: "If you specify an instance that you do not own, it is not
// included in the output." A malformed record must be reported and release
// nothing.
func TestOrphanMalformedInstanceIDNeverReleases(t *testing.T) {
	w := newWorld(t, 2, after("30m"))
	if err := w.kube.CoreV1().Nodes().Delete(w.ctx, "cass-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.annotateVolume("pv-0", map[string]any{AnnotationInstanceID: "i-bogus"})
	_ = w.b.Reconcile(w.ctx)
	w.clock.Step(31 * time.Minute)
	_ = w.b.Reconcile(w.ctx)
	if i, _ := w.emu.Instance(w.ids[0]); i.EC2State != "running" {
		t.Fatalf("instance %s is %s, want running", w.ids[0], i.EC2State)
	}
	if d := w.claimDeletes(); len(d) != 0 {
		t.Errorf("claims %v deleted on a malformed instance-id annotation, while the volume's instance %s runs", d, w.ids[0])
	}
}
