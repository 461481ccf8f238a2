package balancer

import (
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestReview11cHeldWhileGroupsCannotBeDescribed (review 11c, the known-open
// item "throttled DescribeAutoScalingGroups for longer than the lifecycle
// heartbeat timeout"): Reconcile returns at once when DescribeGroups fails,
// before lifecycleActions, so no loop heartbeats anything while
// DescribeAutoScalingGroups keeps failing. The heartbeat timer
// (heartbeat.go) only repeats the set the last successful loop held, and
// that set lacks the instance in both cases here: after a restart it is
// empty, and a termination that starts while the describes fail (a human's
// TerminateInstanceInAutoScalingGroup, a health-check replacement: neither is
// stopped by scale-in protection) was never seen by a loop. The hook's
// DefaultResult is CONTINUE, so at its heartbeat timeout (5 minutes by
// default) the instance is terminated with its bound local volume
// (API_LifecycleHook, HeartbeatTimeout: "If the lifecycle hook times out,
// Amazon EC2 Auto Scaling performs the action that you specified in the
// DefaultResult property"). DescribeAutoScalingGroups is the call most
// exposed to throttling (CLI reference, autoscaling: "The
// DescribeAutoScalingGroups API operation might be throttled when retrieving
// details for an Auto Scaling group that contains many instances"), and it
// is paginated: one throttled page past the SDK's retries fails the whole
// loop, while the single-request RecordLifecycleActionHeartbeat and
// DescribeAutoScalingInstances still get through the account's shared
// bucket. The balancer knows, from the apiserver alone, the instances of
// bound local volumes; DescribeAutoScalingInstances gives their group and
// lifecycle state without DescribeAutoScalingGroups. Fault injected on
// DescribeAutoScalingGroups only, as TestHeldAfterRestartWhileHooksCannotBeDescribed
// does for DescribeLifecycleHooks.
func TestReview11cHeldWhileGroupsCannotBeDescribed(t *testing.T) {
	for _, tc := range restartCases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, 2, nil)
			w.terminateWhileFailing(tc.restart, "DescribeAutoScalingGroups")
			if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
				t.Errorf("instance %s, whose node cass-0 holds the bound local volume pv-0, is %s after DescribeAutoScalingGroups failed for 10 minutes (twice the hook's heartbeat timeout), want %s: the hook's CONTINUE terminated it with its data",
					w.ids[0], got, awstest.TerminatingWait)
			}
		})
	}
}

// TestReview11cHeldOutOfDiscoveryWhileInstancesCannotBeDescribed (review
// 11c, fix 3685baf / 402fe8a): after a restart, a held termination whose
// group left discovery is found again only through
// DescribeAutoScalingInstances (undiscoveredHolders). When that call fails,
// undiscoveredHolders returns the error and nothing: the instance is not
// heartbeated, and the hook's CONTINUE terminates it with its bound local
// volume at the heartbeat timeout (API_LifecycleHook, HeartbeatTimeout). The
// doc comment of heldUndiscovered promises the opposite ("A failed describe
// or quorum read holds it too"), which it keeps only for the in-memory set
// that a restart empties. The balancer could keep what it needs to hold
// across a restart (the held instance's group recorded on its node or
// volume, as ballast.k8s.io/instance-id is), or fall back to describing the
// groups by the names it knows.
func TestReview11cHeldOutOfDiscoveryWhileInstancesCannotBeDescribed(t *testing.T) {
	w := newWorld(t, 2, nil)
	w.startTermination(w.ids[0])
	w.reconcile()
	w.leaveDiscovery()
	w.restart()
	w.throttle("DescribeAutoScalingInstances")
	w.loopPastTimeout()
	if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
		t.Errorf("instance %s, whose node holds a bound local volume, is %s after a restart while its group is out of discovery and DescribeAutoScalingInstances failed for 10 minutes, want %s",
			w.ids[0], got, awstest.TerminatingWait)
	}
}

// TestReview11cHeldAsLongAsAWSAllows (review 11c): AWS ends a held
// termination at the hook's global timeout whatever the heartbeats
// (API_LifecycleHook, GlobalTimeout: "The maximum time, in seconds, that an
// instance can remain in a wait state. The maximum is 172800 seconds (48
// hours) or 100 times HeartbeatTimeout, whichever is smaller."), with the DefaultResult, CONTINUE: the instance
// is terminated with its bound local volume. The balancer's hook takes
// --lifecycle-heartbeat-timeout, 5 minutes by default
// (DefaultHeartbeatTimeout), so a held termination lasts 100 x 300 s = 8.3
// hours: a night without an operator, where AWS would allow 48 hours to
// move the data. A heartbeat timeout of at least 1728 s (28.8 minutes)
// gets the full 48 hours; nothing in operations.md says so, only the
// TerminationHeld event names the limit. The heartbeat timeout costs nothing
// to the terminations the balancer does not hold (it completes them with
// CONTINUE in its next loop). Root cause: DefaultHeartbeatTimeout
// (internal/balancer/balancer.go) and hook().
func TestReview11cHeldAsLongAsAWSAllows(t *testing.T) {
	w := newWorld(t, 2, nil)
	// The balancer as az-balancer runs it by default.
	opts := w.b.opts
	opts.HeartbeatTimeout, opts.HeartbeatInterval = DefaultHeartbeatTimeout, 0
	w.b = New(w.b.kube, w.b.cloud, w.rec, w.clock, opts, nil)
	w.reconcile()
	w.startTermination(w.ids[0])
	for range 9 * 30 { // nine hours of loops, two minutes apart
		_ = w.b.Reconcile(w.ctx)
		w.clock.Step(2 * time.Minute)
	}
	_ = w.b.Reconcile(w.ctx)
	if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
		t.Errorf("instance %s, whose node holds the bound local volume pv-0 and which every loop heartbeated, is %s after 9 hours; AWS keeps a heartbeated termination up to 48 hours, but the hook's heartbeat timeout %s limits it to %s",
			w.ids[0], got, w.b.opts.HeartbeatTimeout, globalTimeout(w.b.opts.HeartbeatTimeout.Seconds()))
	}
}

// TestReview11cHeldForACSILocalVolumeOfTopologyKey (review 11c): a CSI
// driver's node-local volume (TopoLVM, OpenEBS LVM LocalPV: the usual way to
// carve the instance-store NVMe of i3 instances into volumes) pins its PV
// with the driver's own topology key, whose value is the node's name
// (TopoLVM: `topology.topolvm.io/node In [<node>]`; kubelet labels the Node
// with it from the driver's NodeGetInfo accessible topology, CSI spec
// "accessible_topology"). boundLocalHosts recognises a CSI volume as
// node-local only when every term names `kubernetes.io/hostname` or
// metadata.name, so such a volume is not "held": the node gets no
// scale-down-disabled annotation, no scale-in protection, and its held
// termination is let go at once with CONTINUE, terminating the instance
// with the volume's data. A term whose In values match exactly one node,
// by a label only that node carries, pins the volume to that node as surely
// as the hostname does.
func TestReview11cHeldForACSILocalVolumeOfTopologyKey(t *testing.T) {
	const key = "topology.topolvm.io/node"
	w := newWorld(t, 2, nil)
	for i := range w.ids {
		name := fmt.Sprintf("cass-%d", i)
		n, err := w.kube.CoreV1().Nodes().Get(w.ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Labels[key] = name
		if _, err := w.kube.CoreV1().Nodes().Update(w.ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		pv := w.volume(fmt.Sprintf("pv-%d", i))
		pv.Spec.PersistentVolumeSource = v1.PersistentVolumeSource{CSI: &v1.CSIPersistentVolumeSource{Driver: "topolvm.io", VolumeHandle: fmt.Sprintf("lv-%d", i)}}
		pv.Spec.NodeAffinity.Required.NodeSelectorTerms = []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{{Key: key, Operator: v1.NodeSelectorOpIn, Values: []string{name}}}}}
		if _, err := w.kube.CoreV1().PersistentVolumes().Update(w.ctx, pv, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w.reconcile()
	w.startTermination(w.ids[0])
	w.loopPastTimeout()
	if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
		t.Errorf("instance %s, whose node cass-0 holds the bound TopoLVM volume pv-0 (pinned by %s), is %s, want %s", w.ids[0], key, got, awstest.TerminatingWait)
	}
}
