package balancer

import (
	"testing"

	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestReview11eHeldWhenTheOnlyTopoLVMNodeIsGone (review 11e, against
// 9ee2cce, review 11d #2): a TopoLVM volume (pinned by
// "topology.topolvm.io/node In [cass-0]", on cass-0's instance store)
// records its instance. The instance's termination starts (a human, a
// health replacement, AZRebalance: none is stopped by scale-in
// protection) and the balancer's hook holds it in Terminating:Wait. Its
// Node object is then deleted (the drain/termination handler, or the
// cloud node controller once the kubelet stops answering), which the
// design handles: the volume's recorded instance keeps the hold (holds:
// inv.named). Since 9ee2cce, nodeTopology.pinned counts a recorded volume
// whose K=v no node carries as pinned to a node that is gone only while
// perNodeKey finds ANOTHER node labelled K with a value naming it. When
// cass-0 was the only TopoLVM node (one storage node, or a storage group
// scaled to its last node, or every TopoLVM node replaced at once) no
// other node shows that, the volume is not node-local at all, inv.named
// loses it, lifecycleActions takes the instance for "Unknown node, no
// volume records the instance", and no heartbeat is sent: at the hook's
// heartbeat timeout AWS applies the DefaultResult CONTINUE and terminates
// the instance with the volume's data (API_LifecycleHook, HeartbeatTimeout:
// "If the lifecycle hook times out, Amazon EC2 Auto Scaling performs the
// action that you specified in the DefaultResult property"). Before
// 9ee2cce the record alone kept it held. The subtest "another TopoLVM
// node" is the same world with cass-1 also a TopoLVM node: held, so the
// only difference is perNodeKey.
func TestReview11eHeldWhenTheOnlyTopoLVMNodeIsGone(t *testing.T) {
	const driver, key = "topolvm.io", "topology.topolvm.io/node"
	for _, tc := range []struct {
		name    string
		another bool
	}{{"the only TopoLVM node", false}, {"another TopoLVM node", true}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, 2, nil)
			w.pinByTopology(0, driver, key, "cass-0", []string{key})
			if tc.another {
				w.pinByTopology(1, driver, key, "cass-1", []string{key})
			}
			w.reconcile() // records the instance on pv-0
			if got := w.volume("pv-0").Annotations[AnnotationInstanceID]; got != w.ids[0] {
				t.Fatalf("pv-0 records instance %q, want %s", got, w.ids[0])
			}
			w.startTermination(w.ids[0])
			w.reconcile()
			if err := w.kube.CoreV1().Nodes().Delete(w.ctx, "cass-0", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := w.kube.StorageV1().CSINodes().Delete(w.ctx, "cass-0", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			w.loopPastTimeout()
			if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
				t.Errorf("instance %s, recorded by the bound TopoLVM volume pv-0 whose data is on it, is %s after its node was deleted and 10 minutes (twice the hook's heartbeat timeout) passed, want %s: the hook's CONTINUE terminated it with the data",
					w.ids[0], got, awstest.TerminatingWait)
			}
		})
	}
}

// TestReview11eDriverReRegistrationReleasesANodeIDPin (review 11e, against
// 9ee2cce, review 11d #2): nodeTopology accepts a term whose value is the
// node ID the node's CSINode records for the driver (OpenEBS ZFS LocalPV
// pins with openebs.io/nodeid, whose value is the driver's node ID and may
// be set apart from the node's name to move a pool), and promises that "a
// driver re-registering on the node (its CSINode entry gone for a moment)
// releases nothing", through the volume's recorded instance. Since 9ee2cce
// the recorded path also needs namesNode, and for such a value namesNode
// reads only the CSINode's node ID: while the driver's CSINode entry is
// gone (the node plugin restarting, an upgrade of its DaemonSet; kubelet
// drops the driver from CSINode.spec.drivers when the plugin unregisters
// and adds it back when it registers again) the volume is no longer
// node-local, on the loop's list and on the quorum read alike, and
// lifecycleActions completes the held termination with CONTINUE
// (API_CompleteLifecycleAction: "Completes the lifecycle action for the
// specified token or instance with the specified result") while the
// volume's data is on the instance. Before 9ee2cce, the record alone kept
// it pinned.
func TestReview11eDriverReRegistrationReleasesANodeIDPin(t *testing.T) {
	const driver, key, nodeID = "zfs.csi.openebs.io", "openebs.io/nodeid", "zfs-pool-a"
	w := newWorld(t, 2, nil)
	w.pinByTopology(0, driver, key, nodeID, nil)
	cn := &storagev1.CSINode{ObjectMeta: metav1.ObjectMeta{Name: "cass-0"}, Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{{Name: driver, NodeID: nodeID, TopologyKeys: []string{key}}}}}
	if _, err := w.kube.StorageV1().CSINodes().Create(w.ctx, cn, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.reconcile() // records the instance on pv-0
	if got := w.volume("pv-0").Annotations[AnnotationInstanceID]; got != w.ids[0] {
		t.Fatalf("pv-0 records instance %q, want %s: the node-ID pin is not taken for node-local at all", got, w.ids[0])
	}
	w.startTermination(w.ids[0])
	w.reconcile()
	if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
		t.Fatalf("instance %s is %s before the driver re-registers, want %s", w.ids[0], got, awstest.TerminatingWait)
	}
	// The node plugin unregisters: kubelet removes the driver from the CSINode.
	cn, err := w.kube.StorageV1().CSINodes().Get(w.ctx, "cass-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cn.Spec.Drivers = nil
	if _, err := w.kube.StorageV1().CSINodes().Update(w.ctx, cn, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_ = w.b.Reconcile(w.ctx) // one loop while the driver is away
	if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
		t.Errorf("instance %s, recorded by the bound ZFS volume pv-0 (pinned by %s=%s, its CSINode node ID) whose data is on it, is %s after one loop while the driver re-registered, want %s: its held termination was let go",
			w.ids[0], key, nodeID, got, awstest.TerminatingWait)
	}
}
