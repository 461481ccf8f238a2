package hopeless

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/utils/clock"
)

// LeaderElection is what the binary knows about its own leader election:
// kube-scheduler's effective leaderElection.leaderElect, from --config and
// the --leader-elect flag. The framework hands plugins no leadership signal,
// so cmd/scheduler reads its configuration and tells the plugin (NewFactory).
type LeaderElection struct {
	Enabled bool
}

// How a replica knows it leads. In v1.37.2 every replica starts its
// informers and the queue's event handlers before leader election
// (cmd/kube-scheduler/app/server.go: DelayCacheUntilActive is false by
// default), so standbys run PreEnqueue too; only the leader runs
// sched.Run, i.e. the scheduling cycle. client-go's elector publishes the
// gauge leader_election_master_status{name="kube-scheduler"} (the elector's
// name, which v1.37.2 sets to kube-scheduler whatever the lease is called:
// options.makeLeaderElectionConfig): 0 from the moment the
// elector is created and 1 once it holds the lease; a scheduler that loses
// the lease exits. The elector is created only after every informer
// handler synced, the queue's included, which on a large cluster takes
// minutes, so the gauge's absence says nothing about leadership: with leader
// election on, only that gauge at 1 counts.
const (
	leaderMetric = "leader_election_master_status"
	electorName  = "kube-scheduler"
)

type leaderCheck struct {
	gatherer prometheus.Gatherer
	// election is the binary's configuration; nil when the plugin was built
	// outside cmd/scheduler (tests, benchmarks, another binary): then the
	// gauge decides when it exists, and a process without it leads.
	election *LeaderElection

	clock clock.PassiveClock

	mu     sync.Mutex
	leader bool
	// asked is when the gauge was last read, answer what it said: a
	// replica that does not lead, or has no elector to ask, reads it again
	// only leaderRecheck later.
	asked  time.Time
	answer bool
}

// leaderRecheck is how long an answer that this replica does not lead, or
// that it leads with no elector to ask, is kept. Reading the gauge gathers
// every series of the process's registry (the scheduler's histograms per
// plugin and extension point among them): once a second each for the status
// writer and the owner report, it cost the benchmark's scheduler process 1.5%
// to 4% of its CPU. A replica that takes the lease starts writing at most
// this much later.
const leaderRecheck = 5 * time.Second

func newLeaderCheck(g prometheus.Gatherer, election *LeaderElection, clk clock.PassiveClock) *leaderCheck {
	return &leaderCheck{gatherer: g, election: election, clock: clk}
}

// leading reports whether this replica leads. Leadership, once seen, is
// kept: kube-scheduler exits when it loses the lease.
func (c *leaderCheck) leading() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader {
		return true
	}
	if c.election != nil && !c.election.Enabled {
		c.leader = true
		return true
	}
	now := c.clock.Now()
	if !c.asked.IsZero() && now.Sub(c.asked) < leaderRecheck {
		return c.answer
	}
	c.asked = now
	c.answer = c.ask()
	return c.answer
}

// ask reads the elector's gauge.
func (c *leaderCheck) ask() bool {
	families, err := c.gatherer.Gather()
	if err != nil {
		return false
	}
	for _, f := range families {
		if f.GetName() != leaderMetric {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetGauge().GetValue() != 1 || !isSchedulerElector(m.GetLabel()) {
				continue
			}
			c.leader = true
			return true
		}
		return false
	}
	// No elector (yet). With leader election on it will come; otherwise
	// this process runs none.
	return c.election == nil
}

func isSchedulerElector(labels []*dto.LabelPair) bool {
	for _, l := range labels {
		if l.GetName() == "name" {
			return l.GetValue() == electorName
		}
	}
	return false
}
