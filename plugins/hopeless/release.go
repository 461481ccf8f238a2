package hopeless

import (
	"context"
	"maps"
	"slices"
	"sync"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/sets"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// releaseStore is what the release path feeds: the shape store's nodes and
// DeviceClasses. Each call reports whether the store changed.
type releaseStore interface {
	UpsertNode(*v1.Node) bool
	DeleteNode(name string) bool
	UpsertDeviceClass(*resourceapi.DeviceClass) bool
	DeleteDeviceClass(*resourceapi.DeviceClass) bool
	NodeChangesMatter(*shapes.Requirements, shapes.Reason, []shapes.NodeChange) bool
	Generations() (gen, memberGen uint64)
}

// releaser is the release path. Node and DeviceClass changes go to the
// store and then to a re-check of every parked verdict, which activates the
// pods that now fit (and re-reports those whose reason changed); claim and
// volume changes activate the parked pods of that claim that now fit.
// Release does not depend on the order in which an informer hands an
// object to the queue and to the plugin: the hints are a fast path, this is
// the path that always runs, after the store has the object.
type releaser struct {
	store     releaseStore
	verdicts  *verdictCache
	parking   *parker
	activator fwk.PodActivator
	pods      corelisters.PodLister // to activate the current copy of a parked pod
	synced    func() bool
	// logger is for the informer handlers, which get no context.
	logger klog.Logger

	// recheck asks the re-check loop to judge the parked verdicts again
	// (the store changed); it holds at most one request.
	recheck chan struct{}

	// mu guards what the next re-check looks at: the node changes since
	// the last one, or all (full: anything else changed, or too many).
	mu     sync.Mutex
	deltas []shapes.NodeChange
	full   bool
	// claims: claims whose parked pods the loop is to judge again
	// (recheckClaims).
	claims sets.Set[string]

	// volumeMu guards claimsOfVolume, the claims naming each PV (by
	// spec.volumeName), and volumeOfClaim, the PV each claim names: a
	// bound claim reads its PV by name, whatever the PV's claimRef says.
	volumeMu       sync.Mutex
	claimsOfVolume map[string]sets.Set[string]
	volumeOfClaim  map[string]string
}

// maxDeltas is how many node changes a re-check weighs one by one against
// each identity verdict; past it, it judges every verdict again.
const maxDeltas = 32

func newReleaser(store releaseStore, verdicts *verdictCache, parking *parker, activator fwk.PodActivator, pods corelisters.PodLister, synced func() bool, logger klog.Logger) *releaser {
	return &releaser{store: store, verdicts: verdicts, parking: parking, activator: activator, pods: pods,
		synced: synced, logger: logger, recheck: make(chan struct{}, 1)}
}

// nodeChanged feeds the store, and has the parked pods judged again when
// the node changed what the static predicates read. old is nil for an add.
func (r *releaser) nodeChanged(old, n *v1.Node) {
	if old == nil || staticFieldsChanged(old, n) {
		r.nodeRecheck(shapes.NodeChange{Old: old, New: n}, func() { r.store.UpsertNode(n) })
		return
	}
	r.store.UpsertNode(n)
}

// nodeDeleted releases nobody, but can change the reason.
func (r *releaser) nodeDeleted(n *v1.Node) {
	r.nodeRecheck(shapes.NodeChange{Old: n}, func() { r.store.DeleteNode(n.Name) })
}

// staticFieldsChanged reports whether an update changed what a static
// predicate reads from a node (identity labels included).
func staticFieldsChanged(old, n *v1.Node) bool {
	return old.Spec.Unschedulable != n.Spec.Unschedulable ||
		!maps.Equal(old.Labels, n.Labels) ||
		!apiequality.Semantic.DeepEqual(old.Spec.Taints, n.Spec.Taints) ||
		!apiequality.Semantic.DeepEqual(old.Status.Allocatable, n.Status.Allocatable)
}

// deviceClassChanged feeds the store; when the mapped names change, the
// re-check releases the verdicts that now fit and re-reports those whose
// reason changed (a class deleted).
func (r *releaser) deviceClassChanged(dc *resourceapi.DeviceClass, deleted bool) {
	var changed bool
	if deleted {
		changed = r.store.DeleteDeviceClass(dc)
	} else {
		changed = r.store.UpsertDeviceClass(dc)
	}
	if changed {
		r.requestRecheck()
	}
}

// claimChanged brings back the parked pods of a claim that was created,
// rebound or changed (e.g. a claim of a lost local PV recreated by its
// StatefulSet), if it makes them schedulable; deleted: the claim is gone.
func (r *releaser) claimChanged(pvc *v1.PersistentVolumeClaim, deleted bool) {
	key := pvc.Namespace + "/" + pvc.Name
	r.indexClaim(key, pvc.Spec.VolumeName, deleted)
	r.verdicts.volumeGen.Add(1)
	r.activate(r.parking.lot.ofClaim(key))
}

// volumeChanged does the same for the claims of a PV (its node affinity
// may have been fixed): those naming it, and the one its claimRef names.
func (r *releaser) volumeChanged(pv *v1.PersistentVolume) {
	r.verdicts.volumeGen.Add(1)
	claims := r.claimsNaming(pv.Name)
	if ref := pv.Spec.ClaimRef; ref != nil {
		claims.Insert(ref.Namespace + "/" + ref.Name)
	}
	for c := range claims {
		r.activate(r.parking.lot.ofClaim(c))
	}
}

// indexClaim records the PV claim key names (none when deleted).
func (r *releaser) indexClaim(key, volume string, deleted bool) {
	r.volumeMu.Lock()
	defer r.volumeMu.Unlock()
	if r.claimsOfVolume == nil {
		r.claimsOfVolume, r.volumeOfClaim = map[string]sets.Set[string]{}, map[string]string{}
	}
	if old, ok := r.volumeOfClaim[key]; ok && (deleted || old != volume) {
		if set := r.claimsOfVolume[old]; set != nil {
			set.Delete(key)
			if set.Len() == 0 {
				delete(r.claimsOfVolume, old)
			}
		}
		delete(r.volumeOfClaim, key)
	}
	if deleted || volume == "" {
		return
	}
	r.volumeOfClaim[key] = volume
	if r.claimsOfVolume[volume] == nil {
		r.claimsOfVolume[volume] = sets.New[string]()
	}
	r.claimsOfVolume[volume].Insert(key)
}

// claimsNaming returns the claims whose spec.volumeName is volume.
func (r *releaser) claimsNaming(volume string) sets.Set[string] {
	r.volumeMu.Lock()
	defer r.volumeMu.Unlock()
	return r.claimsOfVolume[volume].Clone()
}

// recheckClaims has the re-check loop judge the parked pods of claims
// again: a pod judged across a claim or PV change may have been parked
// after that change's handler looked for it (parkJudged). Activating
// cannot run where parkJudged does (under the scheduling queue's lock).
func (r *releaser) recheckClaims(claims []string) {
	if len(claims) == 0 {
		return
	}
	r.mu.Lock()
	if r.claims == nil {
		r.claims = sets.New[string]()
	}
	r.claims.Insert(claims...)
	r.mu.Unlock()
	r.wake()
}

// activate moves the parked pods that are no longer hopeless (or that the
// plugin can no longer judge) back to the active queue, and re-reports those
// still hopeless for another reason, as recheckParked does.
func (r *releaser) activate(parked []parkedPod) {
	if len(parked) == 0 || !r.synced() {
		return
	}
	pods := map[string]*v1.Pod{}
	judged := r.verdicts.volumeGen.Load()
	for _, p := range parked {
		pod, err := r.pods.Pods(p.pod.Namespace).Get(p.pod.Name)
		if err != nil || pod.UID != p.pod.UID {
			continue
		}
		v, key, ok := r.verdicts.judge(pod)
		switch {
		case !ok || !v.Hopeless:
			// Only the entry read: a pod parked anew meanwhile was judged
			// by whoever parked it, a pod forgotten is gone.
			if r.parking.unparkIf(p) {
				pods[p.name()] = pod
			}
		case v.Message != p.message || key != p.key:
			// A new reason gets the condition too, whoever wrote the old
			// one. A new key (its claim bound since it was parked) moves
			// the pod to the lot entry of its key, even with the same
			// reason: the re-check judges a key's pods by one of them.
			r.reparkJudged(p, pod, key, v, judged)
		}
	}
	if len(pods) > 0 {
		r.logger.V(2).Info("Activating parked pods that may have become schedulable", "count", len(pods))
		r.activator.Activate(r.logger, pods)
	}
}

// reparkJudged re-parks the pod of entry p as judged (v, key) at volume
// generation judged. A claim or PV changed since may have had its handler
// judge entry p, and find it replaced when it tried to release it: the
// pod's claims are judged again.
func (r *releaser) reparkJudged(p parkedPod, pod *v1.Pod, key verdictKey, v shapes.Verdict, judged uint64) {
	r.parking.reparkIf(p, pod, key, v, true)
	if r.verdicts.volumeGen.Load() != judged {
		r.recheckClaims(p.claims)
	}
}

// requestRecheck asks for every parked verdict to be judged again.
func (r *releaser) requestRecheck() {
	r.mu.Lock()
	r.full = true
	r.mu.Unlock()
	r.wake()
}

// nodeRecheck has the store take a node change (apply) and asks for the
// parked verdicts that it can matter to to be judged again. The store and
// the record change together: a re-check weighs the changes against the
// store as they left it.
func (r *releaser) nodeRecheck(d shapes.NodeChange, apply func()) {
	r.mu.Lock()
	apply()
	r.recordLocked(d)
	r.mu.Unlock()
	r.wake()
}

// recordLocked keeps node changes for the next re-check to weigh; past
// maxDeltas it asks for a full one instead. r.mu is held.
func (r *releaser) recordLocked(deltas ...shapes.NodeChange) {
	if len(r.deltas)+len(deltas) <= maxDeltas {
		r.deltas = append(r.deltas, deltas...)
	} else {
		r.full = true
	}
}

// recheckPass is what one re-check weighs node changes with.
type recheckPass struct {
	deltas []shapes.NodeChange // the node changes to weigh
	// taken: those of deltas recorded while the pass ran; the verdicts
	// weighed before they were taken weigh them in the next re-check.
	taken []shapes.NodeChange
	full  bool             // judge every verdict instead
	at    storeGenerations // the store with every change of deltas and none after
}

// changes takes what the next re-check looks at, and the store's
// generations with every one of those changes and none after.
func (r *releaser) changes() recheckPass {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := recheckPass{deltas: r.deltas, full: r.full}
	r.deltas, r.full = nil, false
	gen, memberGen := r.store.Generations()
	p.at = storeGenerations{gen: gen, memberGen: memberGen}
	return p
}

func (r *releaser) wake() {
	select {
	case r.recheck <- struct{}{}:
	default:
	}
}

// run judges the parked verdicts again whenever the store changed in a
// way that can matter to them, until ctx ends.
func (r *releaser) run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.recheck:
			r.mu.Lock()
			claims, nodes := r.claims, len(r.deltas) > 0 || r.full
			r.claims = nil
			r.mu.Unlock()
			for c := range claims {
				r.activate(r.parking.lot.ofClaim(c))
			}
			if nodes || len(claims) == 0 {
				r.recheckParked(logger)
			}
		}
	}
}

// recheckParked releases the parked pods of every verdict that is no
// longer hopeless, and re-reports those whose reason changed. It judges
// once per verdict key and message the key's pods were parked with (the
// verdict is cached, so a key with two messages costs one evaluation): the
// pods of a key parked before a node change carry the old message, those
// parked after it the new one, and judging only one of them would leave
// the others' reason stale. Once a key's verdict differs from one of its
// messages, every pod of the key is released, or re-reported where its
// message is not the current one. After node changes only, a verdict that
// names nodes (identity: one per claim of a local PV, say) is judged again
// only if a changed node can matter to it as one of its messages' reason
// (shapes.NodeChangeMatters): judging it costs a check of every node,
// thousands of such verdicts a check of every node on every node event.
func (r *releaser) recheckParked(logger klog.Logger) {
	pass := r.changes()
	if !r.synced() {
		r.requestRecheckLater()
		return
	}
	release := map[string]*v1.Pod{}
	judged := r.verdicts.volumeGen.Load()
	done := map[verdictKey]bool{} // keys whose every pod was brought up to date
	for _, rep := range r.parking.lot.onePerMessage() {
		if done[rep.key] {
			continue
		}
		if !pass.full && !r.weigh(&pass, rep) {
			continue
		}
		v, key, ok := r.verdicts.judge(rep.pod)
		if ok && v.Hopeless && v.Message == rep.message && key == rep.key {
			continue
		}
		done[rep.key] = true
		r.recheckKey(rep.key, rep, v, key, ok, judged, release)
	}
	if len(release) > 0 {
		logger.V(2).Info("Releasing parked pods that may have become schedulable", "count", len(release))
		r.activator.Activate(logger, release)
	}
	if len(pass.taken) > 0 {
		// For the verdicts weighed before these changes were taken.
		r.mu.Lock()
		r.recordLocked(pass.taken...)
		r.mu.Unlock()
		r.wake()
	}
}

// weigh reports whether the node changes of the pass can matter to the
// parked verdict of rep, weighed against the store as it was at p.at, or
// whether every verdict left is to be judged (p.full). When the store took
// a change while it weighed, the untouched node that witnessed for the
// verdict may be that change's: it takes the changes recorded since (into
// p.taken) and weighs again with all of them, none of which can witness
// for another. Past maxDeltas, or when a full re-check was asked for
// meanwhile, the pass becomes full. Judging every verdict left whenever
// the store moved, as once done, made a re-check long enough for the next
// node change to land in it, so that on a churning cluster every re-check
// judged them all.
func (r *releaser) weigh(p *recheckPass, rep parkedPod) bool {
	for {
		if r.nodesMatter(rep, p.deltas) {
			return true
		}
		gen, memberGen := r.store.Generations()
		if (storeGenerations{gen: gen, memberGen: memberGen}) == p.at {
			return false
		}
		later := r.changes()
		p.taken = append(p.taken, later.deltas...)
		p.at = later.at
		if later.full || len(p.deltas)+len(later.deltas) > maxDeltas {
			// The verdicts weighed already are judged next time.
			r.requestRecheckLater()
			r.wake()
			p.full = true
			return true
		}
		p.deltas = append(slices.Clip(p.deltas), later.deltas...)
	}
}

// recheckKey brings the parked pods of lot key lotKey up to date, given the
// verdict (v, key, ok) of rep, one of them, judged at volume generation
// judged (reparkJudged). The verdict of a key is applied
// only to the pods whose key still is the one judged: a pod's key can drift
// while it is parked (its claim bound since, with the same reason, so that
// nothing moved it), and a drifted pod is judged on its own. Keys are
// cached per pod object, so checking each pod's costs a map lookup; only a
// drifted pod costs a verdict of its own.
func (r *releaser) recheckKey(lotKey verdictKey, rep parkedPod, v shapes.Verdict, key verdictKey, ok bool, judged uint64, release map[string]*v1.Pod) {
	type verdictOf struct {
		v   shapes.Verdict
		key verdictKey
		ok  bool
	}
	var group *verdictOf // the verdict of the pods whose key is lotKey
	if key == lotKey {
		group = &verdictOf{v, key, ok}
	}
	for _, p := range r.parking.lot.withVerdict(lotKey) {
		var pv verdictOf
		if p.pod == rep.pod {
			pv = verdictOf{v, key, ok}
		} else if _, cur := r.verdicts.requirements(p.pod); cur == lotKey && group != nil {
			pv = *group
		} else {
			pv.v, pv.key, pv.ok = r.verdicts.judge(p.pod)
			if pv.key == lotKey && group == nil {
				group = &pv
			}
		}
		// The snapshot is judged outside the lot's lock: a pod may have
		// been forgotten (deleted, bound) or parked anew (updated) since;
		// it is unparked or re-parked only if its entry still is p.
		if !pv.ok || !pv.v.Hopeless {
			if r.parking.unparkIf(p) {
				release[p.name()] = p.pod
			}
			continue
		}
		if p.message == pv.v.Message && pv.key == p.key {
			continue // parked after the change, with the current reason
		}
		// A new reason gets the condition too, whoever wrote the old one.
		r.reparkJudged(p, p.pod, pv.key, pv.v, judged)
	}
}

// requestRecheckLater keeps a full re-check due for the next request, as
// one the store was not synced for.
func (r *releaser) requestRecheckLater() {
	r.mu.Lock()
	r.full = true
	r.mu.Unlock()
}

// nodesMatter reports whether the node changes can matter to the parked
// verdict of rep: always, unless it names nodes (for the others a judge is
// one check per shape, cheap and exact).
func (r *releaser) nodesMatter(rep parkedPod, deltas []shapes.NodeChange) bool {
	req, _ := r.verdicts.requirements(rep.pod)
	if !req.Identity() {
		return true
	}
	return r.store.NodeChangesMatter(req, rep.reason, deltas)
}
