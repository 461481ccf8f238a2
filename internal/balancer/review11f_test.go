package balancer

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

// TestReview11fHeartbeatRefusedFailsEveryLoop (review 11f): an instance of
// a bound local volume waits in Terminating:Wait on another termination
// hook of its group (a drain handler's, heartbeat timeout 7200 s), while
// the balancer's own action of it is over: the balancer was down longer
// than its hook's heartbeat timeout (or the termination started before
// its hook was on the group; AWS applies the hooks a group has when the
// transition starts). AWS then refuses the balancer's heartbeat:
// "ValidationError: No active Lifecycle Action found with instance ID
// <id>" (API_RecordLifecycleActionHeartbeat; the same refusal
// CompleteLifecycleAction gives, which 60ae062 counts as done). Nothing of
// the balancer's holds the instance any more, yet lifecycleActions keeps
// heartbeating it and fails the whole loop on the refusal, every loop, for
// as long as the other hook holds it (up to its 48-hour global timeout):
// no loop succeeds, /healthz fails after --unhealthy-after and the
// liveness probe restarts the pod, again and again: bad input from AWS
// turned into a crash loop.
func TestReview11fHeartbeatRefusedFailsEveryLoop(t *testing.T) {
	w := newWorld(t, 2, nil)
	if err := w.b.cloud.PutLifecycleHook(w.ctx, asg.Hook{Group: "cassandra", Name: "drain-handler", Transition: asg.TransitionTerminating,
		HeartbeatTimeout: 7200, DefaultResult: asg.ResultContinue}); err != nil {
		t.Fatal(err)
	}
	w.startTermination(w.ids[0])
	w.reconcile() // held, heartbeaten
	// The balancer is down for 6 minutes, past its hook's 5-minute
	// heartbeat timeout; the drain handler's hook still holds the instance.
	w.clock.Step(6 * time.Minute)
	w.emu.Expire()
	if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
		t.Fatalf("instance %s is %s, want %s (held by the other hook)", w.ids[0], got, awstest.TerminatingWait)
	}
	w.restart()
	failed := 0
	var last error
	for range 6 {
		if err := w.b.Reconcile(w.ctx); err != nil {
			failed++
			last = err
		}
		w.clock.Step(2 * time.Minute)
	}
	if failed > 1 {
		t.Errorf("%d of 6 loops failed (12 minutes, past the 10-minute --unhealthy-after default) because AWS refuses the heartbeat of a termination no hook of the balancer holds any more; the last: %v", failed, last)
	}
}

// TestReview11fSplitBadInputFailsEveryLoop (review 11f): with
// --enforce=split, two kinds of bad input that no pass can change fail the
// split with a plain error, not split.ErrRefused, before any write, so the
// loop fails on every pass and the liveness probe restarts the balancer
// until the operator acts (the rule of review 11c #6, which aabbe85 and
// 17c2170 applied to the tag room and to 255-character names only):
//   - a group of the account already named like a per-zone group of the
//     split group ("cassandra-<zone>", an operator's own per-zone group)
//     that the split did not create (snapshot: "exists but was not split
//     from");
//   - a malformed ballast.k8s.io/split-sizes tag (parseSizes).
func TestReview11fSplitBadInputFailsEveryLoop(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  awstest.GroupOption
		setup func(w *awstest.SplitWorld)
	}{
		{name: "a foreign group named like a per-zone group", setup: func(w *awstest.SplitWorld) {
			w.Emu.CreateGroup(awstest.GroupSpec{Name: ZoneGroupName("cassandra", zones[0]), Zones: zones[:1], MaxSize: 3, InstanceType: "i3.xlarge",
				Tags: map[string]string{"team": "web"}, Instances: map[string]int{zones[0]: 1}})
		}},
		{name: "a malformed split-sizes tag", edit: awstest.WithTags(map[string]string{split.TagState: "started", split.TagSizes: "min=3;max=10"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var edits []awstest.GroupOption
			if tc.edit != nil {
				edits = append(edits, tc.edit)
			}
			w := newSplitWorld(t, edits...)
			if tc.setup != nil {
				tc.setup(w)
			}
			events := record.NewFakeRecorder(100)
			b := splitBalancer(w, fake.NewClientset(), events)
			w.Emu.Reset()
			failed := 0
			var last error
			for range 3 {
				if err := b.Reconcile(ctx); err != nil {
					failed++
					last = err
				}
				w.Clock.Step(time.Minute)
			}
			if failed > 0 {
				t.Errorf("%d of 3 loops failed on a group the split cannot take as it stands (bad input, no write made): %v", failed, last)
			}
			for _, c := range w.Emu.MutatingCalls() {
				if c.Action != "SuspendProcesses" || c.Params.Get("ScalingProcesses.member.1") != asg.ProcessAZRebalance {
					t.Errorf("the loop made %s %v on a group it cannot split", c.Action, c.Params)
				}
			}
			close(events.Events)
			found := false
			for e := range events.Events {
				found = found || strings.Contains(e, ReasonSplitBlocked)
			}
			if !found {
				t.Error("no SplitBlocked event saying why the group is not split")
			}
		})
	}
}

// TestReview11fLocalPVPinnedByACustomNodeLabelIsNotHeld (review 11f):
// docs/design.md and docs/operations.md say "A bound PV is node-local when
// it is `local` or `hostPath`", but localHosts takes the hosts of a local
// or hostPath volume only from kubernetes.io/hostname and metadata.name
// terms, and applies nodeTopology to CSI volumes alone (pinned returns
// false without pv.Spec.CSI). A `local` PV pinned by another per-node label
// is therefore not node-local at all: OpenEBS Local PV Hostpath writes
// `local` PVs whose affinity uses the StorageClass's NodeAffinityLabels
// instead of the hostname ("A unique Node label may be used instead of the
// above mentioned Kubernetes default label to uniquely identify a node",
// dynamic-localpv-provisioner docs, "Use a unique Node-Selector label"),
// and a hand-made local PV may select its node by any unique label. Its
// node loses its protection, and a termination held by the balancer's hook
// is let go with CONTINUE while the volume, bound, has its data on the
// instance.
func TestReview11fLocalPVPinnedByACustomNodeLabelIsNotHeld(t *testing.T) {
	const key, value = "openebs.io/custom-node-unique-id", "cass-0-uid"
	w := newWorld(t, 2, nil)
	n, err := w.kube.CoreV1().Nodes().Get(w.ctx, "cass-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Labels[key] = value
	if _, err := w.kube.CoreV1().Nodes().Update(w.ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pv := w.volume("pv-0")
	pv.Spec.NodeAffinity.Required.NodeSelectorTerms = []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{{Key: key, Operator: v1.NodeSelectorOpIn, Values: []string{value}}}}}
	if _, err := w.kube.CoreV1().PersistentVolumes().Update(w.ctx, pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if pv.Spec.Local == nil {
		t.Fatal("pv-0 is not a local volume")
	}
	_ = w.b.Reconcile(w.ctx)
	w.startTermination(w.ids[0])
	w.loopPastTimeout()
	if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
		t.Errorf("instance %s, whose node cass-0 holds the bound local volume pv-0 (spec.local, pinned by %s In [%s], only cass-0 carries it), is %s, want %s: its termination was let go with the data",
			w.ids[0], key, value, got, awstest.TerminatingWait)
	}
}
