package hopeless

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// parkingLot is who is parked, why, by claim and by verdict key (and, under
// the key, by message), with its own lock, as upstream's queue keeps its
// unschedulableEntities. It knows nothing of the store, the queue or the API.
type parkingLot struct {
	mu      sync.Mutex
	pods    map[types.UID]parkedPod
	byClaim map[string]sets.Set[types.UID]
	// byVerdict holds the parked pods per verdict key, grouped by the
	// message they were parked with: the pods of one key need not carry
	// one message (parked before and after a node change the re-check has
	// not weighed yet).
	byVerdict map[verdictKey]map[string]sets.Set[types.UID]
}

// parkedPod is one parked pod: the object last judged, the key of its
// verdict and the reason it was parked for.
type parkedPod struct {
	pod     *v1.Pod
	key     verdictKey
	reason  shapes.Reason
	message string
	claims  []string // namespace/name of the pod's claims, for the claim index
}

// name is the pod's namespace/name, as the queue's Activate takes it.
func (p parkedPod) name() string { return p.pod.Namespace + "/" + p.pod.Name }

func newParkingLot() *parkingLot {
	return &parkingLot{
		pods:      map[types.UID]parkedPod{},
		byClaim:   map[string]sets.Set[types.UID]{},
		byVerdict: map[verdictKey]map[string]sets.Set[types.UID]{},
	}
}

// park records pod as parked for the verdict v, cached under key; it
// returns the entry it replaced, if any.
func (l *parkingLot) park(pod *v1.Pod, key verdictKey, v shapes.Verdict) (old parkedPod, had bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.parkLocked(pod, key, v)
}

func (l *parkingLot) parkLocked(pod *v1.Pod, key verdictKey, v shapes.Verdict) (old parkedPod, had bool) {
	old, had = l.pods[pod.UID]
	if had {
		l.removeLocked(pod.UID, old)
	}
	p := parkedPod{pod: pod, key: key, reason: v.Reason, message: v.Message, claims: claimKeys(pod)}
	l.pods[pod.UID] = p
	for _, c := range p.claims {
		insert(l.byClaim, c, pod.UID)
	}
	if l.byVerdict[key] == nil {
		l.byVerdict[key] = map[string]sets.Set[types.UID]{}
	}
	insert(l.byVerdict[key], p.message, pod.UID)
	return old, had
}

// parkIf re-parks the pod of snap (an entry read earlier) as park does,
// only if its entry still is snap: the pod was not forgotten (deleted,
// bound) or parked anew (an updated object, another key or reason) since
// snap was read. The release path judges snapshots of the lot outside its
// lock; a stale snapshot must not put back a pod that is gone, nor
// overwrite a newer park.
func (l *parkingLot) parkIf(snap parkedPod, pod *v1.Pod, key verdictKey, v shapes.Verdict) (old parkedPod, done bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, still := l.stillLocked(snap); !still {
		return cur, false
	}
	old, _ = l.parkLocked(pod, key, v)
	return old, true
}

// unparkIf forgets the pod of snap only if its entry still is snap.
func (l *parkingLot) unparkIf(snap parkedPod) (parkedPod, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur, still := l.stillLocked(snap)
	if !still {
		return cur, false
	}
	l.removeLocked(snap.pod.UID, cur)
	return cur, true
}

// stillLocked returns the entry of snap's pod and whether it still is the
// one snap was read as: the same pod object (or version of it), key and
// message. l.mu is held.
func (l *parkingLot) stillLocked(snap parkedPod) (cur parkedPod, still bool) {
	cur, had := l.pods[snap.pod.UID]
	if !had {
		return cur, false
	}
	samePod := cur.pod == snap.pod ||
		(cur.pod.UID == snap.pod.UID && cur.pod.ResourceVersion != "" && cur.pod.ResourceVersion == snap.pod.ResourceVersion)
	return cur, samePod && cur.key == snap.key && cur.message == snap.message
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
	if msgs := l.byVerdict[p.key]; msgs != nil {
		if set := msgs[p.message]; set != nil {
			set.Delete(uid)
			if set.Len() == 0 {
				delete(msgs, p.message)
			}
		}
		if len(msgs) == 0 {
			delete(l.byVerdict, p.key)
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

// onePerMessage returns one parked pod per verdict key and message: one
// verdict answers for all the pods of a key, so a re-check costs
// O(verdicts and their messages), not O(parked pods); but the pods of a key
// parked with another message than the one judged would keep it unseen, so
// each message has its representative.
func (l *parkingLot) onePerMessage() []parkedPod {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]parkedPod, 0, len(l.byVerdict))
	for _, msgs := range l.byVerdict {
		for _, uids := range msgs {
			for uid := range uids {
				out = append(out, l.pods[uid])
				break
			}
		}
	}
	return out
}

// withVerdict returns the parked pods of verdict key, whatever their message.
func (l *parkingLot) withVerdict(key verdictKey) []parkedPod {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, uids := range l.byVerdict[key] {
		n += uids.Len()
	}
	out := make([]parkedPod, 0, n)
	for _, uids := range l.byVerdict[key] {
		for uid := range uids {
			out = append(out, l.pods[uid])
		}
	}
	return out
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

// reporter tells the user why a pod is parked (statusWriter, status.go).
type reporter interface {
	// report says why pod is parked; gated: parked before any scheduling
	// attempt, so the scheduler writes no condition for it.
	report(pod *v1.Pod, message string, gated bool)
	// cancel drops what is still to be said of a released pod.
	cancel(uid types.UID)
	// forget drops what was said of a pod that is bound or gone.
	forget(uid types.UID)
}

// parker parks and unparks pods: the lot, the parked-pods metric and the
// report to the user, kept in step.
type parker struct {
	// mu makes each park, unpark and forget one step with its report: a
	// release that takes a pod out of the lot comes after the report of
	// its park, so that its cancel finds what that report counted and
	// queued (the queue's PreEnqueue and the release loop run on their own
	// goroutines).
	mu       sync.Mutex
	lot      *parkingLot
	reporter reporter
	// live reports whether pod is still pending: the informer holds it,
	// with its UID, unbound. nil: always. The queue and a scheduling cycle
	// judge the copy they hold, which may be of a pod deleted (or bound)
	// since; the informer's store changes before any of its handlers run,
	// the plugin's forget included, so a park checked against it under mu
	// either comes before that forget (which then unparks it) or is not
	// made. Without it, a park after the forget stayed in the lot and on
	// its owner's count for good.
	live func(pod *v1.Pod) bool
}

// park records the pod as parked and tells the user why (again, if the
// reason changed). A pod no longer pending is not parked.
func (p *parker) park(pod *v1.Pod, key verdictKey, v shapes.Verdict, gated bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.live != nil && !p.live(pod) {
		return
	}
	old, had := p.lot.park(pod, key, v)
	p.parked(pod, v, gated, old, had)
}

// reparkIf parks pod as park does, only if the lot's entry of it still is
// snap (parkingLot.parkIf); it reports whether it did.
func (p *parker) reparkIf(snap parkedPod, pod *v1.Pod, key verdictKey, v shapes.Verdict, gated bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	old, done := p.lot.parkIf(snap, pod, key, v)
	if done {
		p.parked(pod, v, gated, old, true)
	}
	return done
}

// unparkIf unparks the pod of snap as unpark does, only if the lot's entry
// of it still is snap; it reports whether it did.
func (p *parker) unparkIf(snap parkedPod) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	old, done := p.lot.unparkIf(snap)
	if done {
		p.unparked(old)
	}
	return done
}

// parked keeps the metric and the report in step with a park that replaced
// old (had: there was one).
func (p *parker) parked(pod *v1.Pod, v shapes.Verdict, gated bool, old parkedPod, had bool) {
	if !had || old.reason != v.Reason {
		metricParked.WithLabelValues(string(v.Reason)).Inc()
		if had {
			metricParked.WithLabelValues(string(old.reason)).Dec()
		}
	}
	p.reporter.report(pod, v.Message, gated)
}

// unpark forgets a pod that is no longer parked, and drops the write still
// queued for it: a released pod may be bound any moment.
func (p *parker) unpark(uid types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unparkLocked(uid)
}

func (p *parker) unparkLocked(uid types.UID) {
	if old, had := p.lot.unpark(uid); had {
		p.unparked(old)
	}
}

// unparked keeps the metric and the report in step with an unpark of old.
func (p *parker) unparked(old parkedPod) {
	metricParked.WithLabelValues(string(old.reason)).Dec()
	p.reporter.cancel(old.pod.UID)
}

// forget unparks a pod that is bound or gone; only now may a new park of
// it be reported again.
func (p *parker) forget(uid types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unparkLocked(uid)
	p.reporter.forget(uid)
}
