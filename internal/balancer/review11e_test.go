package balancer

import (
	"testing"

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
