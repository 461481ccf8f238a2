package hopeless

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// parkingLot is who is parked, why, by claim and by verdict signature, with
// its own lock, as upstream's queue keeps its unschedulableEntities. It
// knows nothing of the store, the queue or the API.
type parkingLot struct {
	mu      sync.Mutex
	pods    map[types.UID]parkedPod
	byClaim map[string]sets.Set[types.UID]
	bySig   map[uint64]sets.Set[types.UID]
}

// parkedPod is one parked pod: the object last judged, the signature of its
// verdict and the reason it was parked for.
type parkedPod struct {
	pod     *v1.Pod
	sig     uint64
	reason  shapes.Reason
	message string
	claims  []string // namespace/name of the pod's claims, for the claim index
}

func (p parkedPod) key() string { return p.pod.Namespace + "/" + p.pod.Name }

func newParkingLot() *parkingLot {
	return &parkingLot{
		pods:    map[types.UID]parkedPod{},
		byClaim: map[string]sets.Set[types.UID]{},
		bySig:   map[uint64]sets.Set[types.UID]{},
	}
}

// park records pod as parked under signature sig for the verdict v; it
// returns the entry it replaced, if any.
func (l *parkingLot) park(pod *v1.Pod, sig uint64, v shapes.Verdict) (old parkedPod, had bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old, had = l.pods[pod.UID]
	if had {
		l.removeLocked(pod.UID, old)
	}
	p := parkedPod{pod: pod, sig: sig, reason: v.Reason, message: v.Message, claims: claimKeys(pod)}
	l.pods[pod.UID] = p
	for _, c := range p.claims {
		insert(l.byClaim, c, pod.UID)
	}
	insert(l.bySig, sig, pod.UID)
	return old, had
}

// unpark forgets pod uid; it returns the entry, if the pod was parked.
func (l *parkingLot) unpark(uid types.UID) (parkedPod, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old, had := l.pods[uid]
	if had {
		l.removeLocked(uid, old)
	}
	return old, had
}

func (l *parkingLot) removeLocked(uid types.UID, p parkedPod) {
	delete(l.pods, uid)
	for _, c := range p.claims {
		if set := l.byClaim[c]; set != nil {
			set.Delete(uid)
			if set.Len() == 0 {
				delete(l.byClaim, c)
			}
		}
	}
	if set := l.bySig[p.sig]; set != nil {
		set.Delete(uid)
		if set.Len() == 0 {
			delete(l.bySig, p.sig)
		}
	}
}

// get returns the entry of pod uid.
func (l *parkingLot) get(uid types.UID) (parkedPod, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.pods[uid]
	return p, ok
}

// ofClaim returns the parked pods that use the claim namespace/name.
func (l *parkingLot) ofClaim(claim string) []parkedPod {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]parkedPod, 0, l.byClaim[claim].Len())
	for uid := range l.byClaim[claim] {
		out = append(out, l.pods[uid])
	}
	return out
}

// all returns every parked pod.
func (l *parkingLot) all() []parkedPod {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]parkedPod, 0, len(l.pods))
	for _, p := range l.pods {
		out = append(out, p)
	}
	return out
}

// signatures returns one parked pod per verdict signature: one verdict
// answers for all the pods of a signature, so a re-check costs
// O(signatures), not O(parked pods).
func (l *parkingLot) signatures() []parkedPod {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]parkedPod, 0, len(l.bySig))
	for _, uids := range l.bySig {
		for uid := range uids {
			out = append(out, l.pods[uid])
			break
		}
	}
	return out
}

// withSignature returns the parked pods of signature sig.
func (l *parkingLot) withSignature(sig uint64) []parkedPod {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]parkedPod, 0, l.bySig[sig].Len())
	for uid := range l.bySig[sig] {
		out = append(out, l.pods[uid])
	}
	return out
}

// len returns the number of parked pods.
func (l *parkingLot) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pods)
}

func insert[K comparable](m map[K]sets.Set[types.UID], k K, uid types.UID) {
	if m[k] == nil {
		m[k] = sets.New[types.UID]()
	}
	m[k].Insert(uid)
}

func claimKeys(pod *v1.Pod) []string {
	var keys []string
	for _, vol := range pod.Spec.Volumes {
		if vol.PersistentVolumeClaim != nil {
			keys = append(keys, pod.Namespace+"/"+vol.PersistentVolumeClaim.ClaimName)
		}
	}
	return keys
}
