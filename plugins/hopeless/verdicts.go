package hopeless

import (
	"sync"
	"time"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// maxCachedVerdicts bounds the cache; it is cleared when full.
const maxCachedVerdicts = 20000

// verdictCache holds one verdict per pod signature. A verdict stays valid
// while the shape set is unchanged; one that depends on individual nodes
// (identity labels, or a list of nodes to narrow to) also needs the same
// membership.
type verdictCache struct {
	mu sync.Mutex
	m  map[uint64]shapes.Verdict
}

func newVerdictCache() *verdictCache { return &verdictCache{m: map[uint64]shapes.Verdict{}} }

func (c *verdictCache) get(store *shapes.Store, req *shapes.Requirements, sig uint64) shapes.Verdict {
	gen, memberGen := store.Generations()
	c.mu.Lock()
	v, ok := c.m[sig]
	c.mu.Unlock()
	if ok && v.Gen == gen && (v.MemberGen == memberGen || (!req.Identity() && v.Nodes == nil)) {
		metricVerdicts.WithLabelValues(resultOf(v), "true").Inc()
		return v
	}
	start := time.Now()
	v = store.Evaluate(req)
	metricVerdictLatency.Observe(time.Since(start).Seconds())
	metricVerdicts.WithLabelValues(resultOf(v), "false").Inc()
	c.mu.Lock()
	if len(c.m) >= maxCachedVerdicts {
		c.m = map[uint64]shapes.Verdict{}
	}
	c.m[sig] = v
	c.mu.Unlock()
	return v
}

func resultOf(v shapes.Verdict) string {
	switch {
	case v.FailOpen:
		return "fail-open"
	case v.Hopeless:
		return "hopeless"
	}
	return "feasible"
}
