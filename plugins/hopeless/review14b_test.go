package hopeless

import (
	"fmt"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/utils/clock"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// TestReview14bOneVerdictTwoMessages: the re-check judges one parked pod
// per verdict key (onePerVerdict) and, when that pod's message is the
// current one, leaves every pod of the key as it is. But the pods of one key
// need not carry one message: a pod parked before a node change keeps the
// message it was parked with until the re-check the change woke runs, and a
// pod of the same key that PreEnqueue judges in between (the CronJob's next
// pods, the store already holding the change) is parked with the new
// message. If the re-check's pick is one of the new pods, nothing differs
// from the current verdict, and the old pod keeps telling its user a reason
// that no longer holds (here: a taint no node carries any more) until the
// queue's five-minute flush re-runs its PreEnqueue. The stale pod's message
// is only corrected when the pick happens to be it, so the test repeats the
// race a few times with many new pods; it fails as soon as one old pod is
// left stale. (The shortcut predates d28d6d3: recheckParked compared one
// pod's message per key before it too; the node-change skip keeps it.)
func TestReview14bOneVerdictTwoMessages(t *testing.T) {
	oldTaint := v1.Taint{Key: "dedicated", Value: "batch", Effect: v1.TaintEffectNoSchedule}
	newTaint := v1.Taint{Key: "dedicated", Value: "gpu", Effect: v1.TaintEffectNoSchedule}
	for trial := range 5 {
		opts := shapes.FeatureOptions(utilfeature.DefaultFeatureGate)
		opts.IdentityLabels = sets.New(v1.LabelHostname)
		store := shapes.NewStore(opts, false)
		n1 := poolNode("n1", "batch", oldTaint)
		store.UpsertNode(n1)
		verdicts := newVerdictCache(store, noVolumes, func() bool { return true }, clock.RealClock{})
		reporter := &recordingReporter{}
		parking := &parker{lot: newParkingLot(), reporter: reporter}
		logger, ctx := ktesting.NewTestContext(t)
		release := newReleaser(store, verdicts, parking, &recordingActivator{}, nil, func() bool { return true }, logger)
		pl := &HopelessPods{gateAtPreEnqueue: true, verdicts: verdicts, parking: parking, recheck: release.requestRecheck, recheckClaims: release.recheckClaims}

		old := cronPod("report-old")
		if s := pl.PreEnqueue(ctx, old); s.Code() != fwk.UnschedulableAndUnresolvable {
			t.Fatalf("setup: PreEnqueue of %s: %v, want parked", old.Name, s)
		}
		if p, _ := parking.lot.get(old.UID); !strings.Contains(p.message, "dedicated=batch:NoSchedule") {
			t.Fatalf("setup: parked with %q, want the batch taint", p.message)
		}
		// The node's taint changes: the store takes it and records the
		// change; the re-check it wakes has not run yet.
		release.nodeChanged(n1, poolNode("n1", "batch", newTaint))
		// Meanwhile the CronJob's next pods (same verdict key) arrive.
		for i := range 30 {
			p := cronPod(fmt.Sprintf("report-new-%d", i))
			if s := pl.PreEnqueue(ctx, p); s.Code() != fwk.UnschedulableAndUnresolvable {
				t.Fatalf("setup: PreEnqueue of %s: %v, want parked", p.Name, s)
			}
		}
		// The re-check the node change woke.
		release.recheckParked(logger)

		req, _ := verdicts.requirements(old)
		want := store.Evaluate(req)
		if !want.Hopeless || !strings.Contains(want.Message, "dedicated=gpu:NoSchedule") || strings.Contains(want.Message, "dedicated=batch:NoSchedule") {
			t.Fatalf("setup: the verdict now is %+v, want hopeless for the gpu taint only", want)
		}
		got, ok := parking.lot.get(old.UID)
		if !ok {
			t.Fatal("the old pod was released; it is still hopeless")
		}
		// What the status writer was last told to write for the old pod.
		last := ""
		reporter.mu.Lock()
		for _, r := range reporter.reports {
			if r.pod == old.Name {
				last = r.message
			}
		}
		reporter.mu.Unlock()
		if got.message != want.Message || last != want.Message {
			t.Fatalf("trial %d: after the node change and its re-check, the pod parked before it still reports\n  %q\n(its condition was last written with\n  %q)\nwhile every other pod of its verdict key, and the store, say\n  %q\n(the re-check judged one pod of the key, a fresh one, and left the rest alone)", trial, got.message, last, want.Message)
		}
	}
}
