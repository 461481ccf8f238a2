package hopeless

import (
	"encoding/json"
	"hash/fnv"
	"sync"
	"sync/atomic"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// maxCachedVerdicts bounds the cache; it is cleared when full.
const maxCachedVerdicts = 20000

// verdictKey identifies a verdict: a hash of exactly the fields the static
// predicates read, so that the pods of one CronJob share one verdict.
type verdictKey uint64

// verdictStore is what the cache needs of the shape store.
type verdictStore interface {
	Options() *shapes.Options
	Evaluate(*shapes.Requirements) shapes.Verdict
	// Current says whether a verdict still holds: the store's invalidation
	// rule, which the cache does not encode.
	Current(shapes.Verdict, *shapes.Requirements) bool
	Generations() (gen, memberGen uint64)
}

// verdictCache judges pods: it parses a pod's static predicates once per
// pod object (requirements) and keeps one verdict per verdict key while the
// store says it is current.
type verdictCache struct {
	store   verdictStore
	volumes shapes.VolumeLookup // claims and PVs, to resolve a pod's bound volumes
	// synced reports whether the informers feeding the store have synced;
	// until then the plugin judges nothing.
	synced func() bool
	clock  clock.PassiveClock
	// live reports whether a pod is still pending (parker.live); nil:
	// always. The requirements of a pod that is not are not kept.
	live func(pod *v1.Pod) bool

	reqs sync.Map // types.UID -> *podRequirements
	// volumeGen counts the claim and PV changes the release path was told
	// of (bumped before it looks for their parked pods): a pod judged
	// across one may be parked after that look, on what it read before.
	volumeGen atomic.Uint64

	mu       sync.Mutex
	verdicts map[verdictKey]shapes.Verdict
}

// podRequirements is a pod's parsed static predicates, valid for the pod
// object and the claims and volumes they were parsed with (reads).
type podRequirements struct {
	pod   *v1.Pod
	reads shapes.VolumeReads
	req   *shapes.Requirements
	key   verdictKey
}

func newVerdictCache(store verdictStore, volumes shapes.VolumeLookup, synced func() bool, clk clock.PassiveClock) *verdictCache {
	return &verdictCache{store: store, volumes: volumes, synced: synced, clock: clk, verdicts: map[verdictKey]shapes.Verdict{}}
}

// judge returns the pod's verdict and the key it is cached under; ok is
// false while the informers are not synced or the store cannot decide
// (fail open), in which case the plugin parks nothing.
func (c *verdictCache) judge(pod *v1.Pod) (v shapes.Verdict, key verdictKey, ok bool) {
	if !c.synced() {
		return shapes.Verdict{}, 0, false
	}
	req, key := c.requirements(pod)
	v = c.verdict(req, key)
	return v, key, !v.FailOpen
}

// verdict returns the cached verdict of key if the store says it is
// current, and evaluates req otherwise.
func (c *verdictCache) verdict(req *shapes.Requirements, key verdictKey) shapes.Verdict {
	c.mu.Lock()
	v, ok := c.verdicts[key]
	c.mu.Unlock()
	if ok && c.store.Current(v, req) {
		metricVerdicts.WithLabelValues(resultOf(v), "true").Inc()
		return v
	}
	start := c.clock.Now()
	v = c.store.Evaluate(req)
	metricVerdictLatency.Observe(c.clock.Since(start).Seconds())
	metricVerdicts.WithLabelValues(resultOf(v), "false").Inc()
	c.mu.Lock()
	if len(c.verdicts) >= maxCachedVerdicts {
		c.verdicts = map[verdictKey]shapes.Verdict{}
	}
	c.verdicts[key] = v
	c.mu.Unlock()
	return v
}

// generations is the store's state, to compare before and after a judge.
func (c *verdictCache) generations() storeGenerations {
	gen, memberGen := c.store.Generations()
	return storeGenerations{gen: gen, memberGen: memberGen, volumes: c.volumeGen.Load()}
}

// storeGenerations is the store's state at one moment; volumes is the
// claim and PV changes told to the release path by then (verdict judges
// only; the release path's own snapshots leave it 0).
type storeGenerations struct{ gen, memberGen, volumes uint64 }

// requirements returns the pod's parsed static predicates and their
// verdict key, cached per pod object.
func (c *verdictCache) requirements(pod *v1.Pod) (*shapes.Requirements, verdictKey) {
	if e, ok := c.reqs.Load(pod.UID); ok {
		if e := e.(*podRequirements); e.pod == pod && e.reads.Unchanged(pod, c.volumes) {
			return e.req, e.key
		}
	}
	vols, pvKey, reads := shapes.ResolveBoundVolumes(pod, c.volumes)
	e := &podRequirements{pod: pod, reads: reads}
	e.req = shapes.NewRequirements(pod, vols, c.store.Options())
	e.key = verdictKeyOf(pod, e.req, pvKey)
	c.reqs.Store(pod.UID, e)
	if c.live != nil && !c.live(pod) {
		// A copy of a pod deleted or bound since (parker.live): its forget
		// may have run already.
		c.reqs.CompareAndDelete(pod.UID, e)
	}
	return e.req, e.key
}

// forget drops the requirements of a pod that is bound or gone.
func (c *verdictCache) forget(uid types.UID) { c.reqs.Delete(uid) }

// verdictKeyOf hashes the fields the static predicates read.
func verdictKeyOf(pod *v1.Pod, req *shapes.Requirements, pvKey string) verdictKey {
	var required *v1.NodeSelector
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		required = a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	}
	in := struct {
		NodeSelector map[string]string
		Required     *v1.NodeSelector
		Tolerations  []v1.Toleration
		Requests     v1.ResourceList
		Volumes      string
	}{pod.Spec.NodeSelector, required, pod.Spec.Tolerations, req.Requests(), pvKey}
	b, err := json.Marshal(in)
	if err != nil {
		// Cannot happen for API types; a per-pod key keeps verdicts correct.
		b = []byte(pod.UID)
	}
	h := fnv.New64a()
	h.Write(b)
	return verdictKey(h.Sum64())
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
