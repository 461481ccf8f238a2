package hopeless

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
)

// How a replica knows it leads. In v1.37.2 every replica starts its
// informers and the queue's event handlers before leader election
// (cmd/kube-scheduler/app/server.go: DelayCacheUntilActive is false by
// default), so standbys run PreEnqueue too; only the leader runs
// sched.Run, i.e. the scheduling cycle. The framework hands plugins no
// leadership signal. client-go's elector publishes one: the gauge
// leader_election_master_status, 0 from the moment the elector is created
// (right after the informers synced) and 1 once it holds the lease; a
// scheduler that loses the lease exits. A process without that gauge runs
// no elector (leader election off) and is the only scheduler of its
// profiles, once its informers have synced and the elector, had there been
// one, would have been created.
const (
	leaderMetric = "leader_election_master_status"
	// electorGrace is how long the gauge must stay absent before the
	// process counts as running without leader election.
	electorGrace = 2 * time.Second
)

type leaderCheck struct {
	gatherer prometheus.Gatherer
	clock    clock.PassiveClock
	// synced reports whether the informers synced; the elector is created
	// only after that, so absence counts only from then on.
	synced func() bool

	mu          sync.Mutex
	leader      bool
	firstAbsent time.Time
}

func newLeaderCheck(g prometheus.Gatherer, c clock.PassiveClock, synced func() bool) *leaderCheck {
	return &leaderCheck{gatherer: g, clock: c, synced: synced}
}

// leading reports whether this replica leads. Leadership, once seen, is
// kept: kube-scheduler exits when it loses the lease.
func (c *leaderCheck) leading() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader {
		return true
	}
	families, err := c.gatherer.Gather()
	if err != nil {
		return false
	}
	for _, f := range families {
		if f.GetName() != leaderMetric {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetGauge().GetValue() == 1 {
				c.leader = true
				return true
			}
		}
		return false
	}
	if !c.synced() {
		return false
	}
	now := c.clock.Now()
	if c.firstAbsent.IsZero() {
		c.firstAbsent = now
	}
	c.leader = now.Sub(c.firstAbsent) >= electorGrace
	return c.leader
}
