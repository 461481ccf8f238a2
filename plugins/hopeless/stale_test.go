package hopeless

import (
	"strings"
	"testing"

	"k8s.io/client-go/util/flowcontrol"
)

// hookedLimiter runs before ahead of each TryAccept.
type hookedLimiter struct {
	flowcontrol.RateLimiter
	before func()
}

func (l hookedLimiter) TryAccept() bool {
	l.before()
	return l.RateLimiter.TryAccept()
}

// TestStaleTellRechecksHeldBeforeEachPatch: tellStale takes the events held
// by the reports of this process once per pass; an owner that another
// profile's report starts holding after that (its pod parks again) keeps
// its event: the pass asks again right before each patch.
func TestStaleTellRechecksHeldBeforeEachPatch(t *testing.T) {
	jobs, pods := cronJobChain("report", 1)
	old := oldLeaderWrote(t, jobs, pods, true)
	next, other := twoReplicas(t, jobs...)
	next.client, next.ownerReport.client = old.client, old.client
	other.client, other.ownerReport.client = old.client, old.client
	next.findStale(next.ctx)
	if len(next.stale) != 1 {
		t.Fatalf("setup: %d stale events, want 1", len(next.stale))
	}
	parked := false
	next.ownerReport.writes = hookedLimiter{RateLimiter: next.ownerReport.writes, before: func() {
		if !parked {
			parked = true
			other.park(pods[0], taintMessage)
			other.settle(t)
		}
	}}
	next.tellStale(next.ctx, next.clock.Now())
	if !parked {
		t.Fatal("setup: tellStale asked for no write")
	}
	if w := warnings(old.events(t)); len(w) != 1 || !strings.HasPrefix(w[0].Message, "1 pod of this CronJob is parked") {
		t.Errorf("the event of an owner held again during the pass: %+v; want it still claiming its parked pod", old.events(t))
	}
	next.mu.Lock()
	left := len(next.stale)
	next.mu.Unlock()
	if left != 0 {
		t.Errorf("%d stale events kept; the one held again is left to its report", left)
	}
}
