package hopeless

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// countingStore is a verdictStore that answers a fixed verdict, counts its
// evaluations and says whether a verdict is current as the test sets.
type countingStore struct {
	*shapes.Store
	verdict   shapes.Verdict
	current   bool
	evaluated int
}

func (s *countingStore) Evaluate(*shapes.Requirements) shapes.Verdict {
	s.evaluated++
	return s.verdict
}

func (s *countingStore) Current(shapes.Verdict, *shapes.Requirements) bool { return s.current }

func newCountingCache(v shapes.Verdict, current bool) (*verdictCache, *countingStore) {
	store := &countingStore{Store: newPlainPlugin().store, verdict: v, current: current}
	return newVerdictCache(store, newPlainPlugin().verdicts.volumes, func() bool { return true }, clock.RealClock{}), store
}

// The cache keeps a verdict exactly while the store says it is current:
// the invalidation rule is the store's.
func TestVerdictCacheAsksTheStore(t *testing.T) {
	for _, current := range []bool{true, false} {
		c, store := newCountingCache(hopelessVerdict(shapes.ReasonTaint, "x"), current)
		pod := cronPod("a")
		for range 3 {
			if v, _, ok := c.judge(pod); !ok || !v.Hopeless {
				t.Fatalf("judge: %+v ok=%v, want the store's verdict", v, ok)
			}
		}
		want := map[bool]int{true: 1, false: 3}[current]
		if store.evaluated != want {
			t.Errorf("store says current=%v: %d evaluations for 3 judgements, want %d", current, store.evaluated, want)
		}
	}
}

func TestVerdictCacheJudge(t *testing.T) {
	tests := []struct {
		name    string
		verdict shapes.Verdict
		synced  bool
		wantOK  bool
	}{
		{"hopeless", hopelessVerdict(shapes.ReasonTaint, "x"), true, true},
		{"feasible", shapes.Verdict{}, true, true},
		{"fail open: the store cannot decide", shapes.Verdict{FailOpen: true}, true, false},
		{"informers not synced", hopelessVerdict(shapes.ReasonTaint, "x"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, store := newCountingCache(tt.verdict, true)
			c.synced = func() bool { return tt.synced }
			v, _, ok := c.judge(cronPod("a"))
			if ok != tt.wantOK {
				t.Errorf("ok %v, want %v (verdict %+v)", ok, tt.wantOK, v)
			}
			if !tt.synced && store.evaluated != 0 {
				t.Errorf("evaluated %d times before the informers synced", store.evaluated)
			}
		})
	}
}

// Requirements are parsed once per pod object; a new object of the same
// pod (an update) is parsed again, and forget drops them.
func TestRequirementsCachedPerPodObject(t *testing.T) {
	c, _ := newCountingCache(shapes.Verdict{}, true)
	pod := cronPod("a")
	first, _ := c.requirements(pod)
	if again, _ := c.requirements(pod); again != first {
		t.Error("the same pod object was parsed twice")
	}
	updated := pod.DeepCopy()
	if next, _ := c.requirements(updated); next == first {
		t.Error("an updated pod object reused the old requirements")
	}
	c.forget(pod.UID)
	if _, ok := c.reqs.Load(pod.UID); ok {
		t.Error("forget kept the pod's requirements")
	}
}

// The cache is cleared when full, so it stays bounded however many
// distinct pods pass.
func TestVerdictCacheBounded(t *testing.T) {
	c, store := newCountingCache(shapes.Verdict{}, true)
	req := shapes.NewRequirements(cronPod("a"), nil, store.Options())
	for k := range verdictKey(maxCachedVerdicts + 1) {
		c.verdict(req, k)
	}
	if n := len(c.verdicts); n != 1 {
		t.Errorf("%d verdicts cached after %d distinct keys, want 1 (cleared when full)", n, maxCachedVerdicts+1)
	}
}

// Store.Current, the rule the cache relies on, on the real store: a node
// of an existing shape keeps a verdict that reads no node identity and
// narrows to no nodes, and invalidates one that reads identity.
func TestStoreCurrent(t *testing.T) {
	tests := []struct {
		name   string
		pod    *v1.Pod
		change func(*shapes.Store)
		want   bool
	}{
		{"nothing changed", cronPod("a"), func(*shapes.Store) {}, true},
		{"a node of an existing shape", cronPod("a"), func(s *shapes.Store) { s.UpsertNode(poolNode("w2", "web")) }, true},
		{"a node of a new shape", cronPod("a"), func(s *shapes.Store) { s.UpsertNode(poolNode("g1", "gpu")) }, false},
		{"identity: a node of an existing shape", makePod("pinned").NodeSelector(map[string]string{v1.LabelHostname: "w3"}).Obj(),
			func(s *shapes.Store) { s.UpsertNode(poolNode("w3", "web")) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlainPlugin(poolNode("w1", "web"))
			req, _ := p.verdicts.requirements(tt.pod)
			v := p.store.Evaluate(req)
			tt.change(p.store)
			if got := p.store.Current(v, req); got != tt.want {
				t.Errorf("Current = %v, want %v (verdict %+v)", got, tt.want, v)
			}
		})
	}
}
