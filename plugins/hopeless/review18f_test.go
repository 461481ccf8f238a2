package hopeless

// Review 18f: an adversarial review of the review-18 rounds (a0afbf9..HEAD)
// as a whole: parker.live, the informer's UID change, verdictCache.live,
// the owner report's re-count, backoff and give-up, and the status writer.

import (
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
)

// TestReview18fFailoverLeavesTheOwnerEventClaimingParkedPods: the leader
// writes "3 pods of this CronJob are parked" on the CronJob. The standby
// (it runs PreEnqueue too, and so counts the same three pods on the same
// owner) sees them leave: a node group appeared, they were released and
// bound. The leader dies before its next write (it writes an owner at most
// once a minute, so the "No pods ... any more" write is up to a minute
// behind the last pod). The standby takes the lease.
//
// Expected (operations.md, "Pile-ups", step 4: "The event turns Normal (No
// pods of this CronJob are parked any more) about a minute after the last
// pod leaves"): the new leader, which counted those pods on that owner,
// turns the event Normal.
// Got: the event keeps saying Warning "3 pods of this CronJob are parked"
// until the apiserver's event TTL (an hour) expires it: the standby forgot
// the owner as "parked and released unseen" (owners.go round: count <= 0 &&
// written < 0), and so does a new leader whose pods leave before its first
// flush (owners.go flush, the same rule). written < 0 says "this replica
// wrote nothing", not "nothing was said": another replica (or this one
// before a restart) may have.
//
// Root cause: owners.go:516 (round on a standby) and owners.go:542
// (flush): a group that was never written by this replica is dropped when
// its count reaches 0, though the event of its owner and message
// (ownerEventName: the same name on every replica) may exist.
func TestReview18fFailoverLeavesTheOwnerEventClaimingParkedPods(t *testing.T) {
	for _, when := range []string{"released while standing by", "released before the new leader's first flush"} {
		t.Run(when, func(t *testing.T) {
			jobs, pods := cronJobChain("report", 3)
			leader := newOwnerFixture(t, jobs...)
			standby := newOwnerFixture(t, jobs...)
			standby.client = leader.client
			standby.ownerReport.client = leader.client
			for _, p := range pods {
				leader.park(p, taintMessage)
				standby.park(p, taintMessage)
			}
			leader.settle(t)
			leader.round(leader.ctx, true)
			standby.settle(t)
			evs := leader.events(t)
			if len(evs) != 1 || !strings.HasPrefix(evs[0].Message, "3 pods of this CronJob are parked") || evs[0].Type != v1.EventTypeWarning {
				t.Fatalf("the leader's event: %+v", evs)
			}
			// The leader dies now; the pods leave (released, bound): both
			// replicas' informers see it, only the standby lives on.
			ownerMetrics.remove(leader.ownerReport) // its process is gone
			if when == "released while standing by" {
				for _, p := range pods {
					standby.remove(p.UID)
				}
				standby.clock.Step(ownerRound)
				standby.round(standby.ctx, false) // still standing by
			} else {
				// It leads, but the pods leave before its first round.
				for _, p := range pods {
					standby.remove(p.UID)
				}
			}
			// It leads: give it the update interval and a few rounds.
			for i := 0; i < 3; i++ {
				standby.clock.Step(ownerUpdateInterval)
				standby.round(standby.ctx, true)
			}
			evs = leader.events(t)
			if len(evs) != 1 {
				t.Fatalf("%d events: %+v", len(evs), evs)
			}
			if e := evs[0]; e.Type != v1.EventTypeNormal || !strings.HasPrefix(e.Message, "No pods of this CronJob are parked any more") {
				t.Errorf("three minutes after the last of its pods left and the standby took over, the CronJob's event is %s %q (count %d), want Normal \"No pods of this CronJob are parked any more ...\"",
					e.Type, e.Message, e.Count)
			}
		})
	}
}
