package hopeless

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/component-base/metrics"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// Pile-ups by owner (incident 8: one CronJob, 4,000 parked pods). The pods
// of a controller are reported on the controller, once per message: one
// event, updated as the count changes, instead of one event per pod; the
// pods still get their PodScheduled condition each (status.go).
const (
	// OwnerEventReason is the reason of the event on the owning controller.
	OwnerEventReason = "HopelessPods"
	// ownerEventAction and ownerReportingController fill the event's
	// action and reporting controller.
	ownerEventAction         = "Scheduling"
	ownerReportingController = "ballast.k8s.io/hopeless-pods"

	// ownerRound is how often the report resolves owners and writes the
	// events that are due.
	ownerRound = time.Second
	// ownerUpdateInterval: an owner's event is rewritten at most this often.
	ownerUpdateInterval = time.Minute
	// ownerRefreshInterval: an unchanged event is rewritten this often, so
	// that the apiserver's event TTL (--event-ttl, 1h by default) does not
	// expire it while the pods stay parked. client-go's event series use
	// the same heartbeat.
	ownerRefreshInterval = 30 * time.Minute
	// ownerGiveUp: a group none of whose pods is parked is dropped when its
	// writes have failed for this long (an outage or throttling of a few
	// minutes is waited out; the event TTL is an hour by default).
	ownerGiveUp = 10 * time.Minute
	// ownerStandbyKeep: a standby keeps an owner whose pods all left this
	// long, time for the leader's "no pods any more" write (at most
	// ownerUpdateInterval after its last).
	ownerStandbyKeep = 2*ownerUpdateInterval + ownerRound
	// ownerStaleDelay: how long after it starts leading a replica looks for
	// owner events that claim parked pods none of its reports counts: the
	// previous leader's (or this replica's before a restart), whose pods
	// left meanwhile. Pods still parked are parked here again well before
	// (the queue runs PreEnqueue on every pending pod at start).
	ownerStaleDelay = ownerUpdateInterval
	// ownerEventsPerSecond and ownerEventsBurst bound all owner event
	// writes of the replica together.
	ownerEventsPerSecond = 2
	ownerEventsBurst     = 10
	// ownerJobWait: a pod whose Job the synced Job informer does not hold
	// (yet: the Job's watch event may arrive after its pod's) waits this
	// long, then is reported on its Job (gone or replaced).
	ownerJobWait = 30 * time.Second
	// forbiddenBackoff: after a 403 listing or watching Jobs, the pods
	// waiting for their Job are reported on it, for this long after the
	// last refusal (the informer keeps retrying, with its own backoff).
	forbiddenBackoff = 10 * time.Minute
	// maxNoteLength is the longest message an event may carry in
	// events.k8s.io/v1 (core/v1 events are read through it too).
	maxNoteLength = 1024

	// maxOwnerNamespaces bounds the namespace label of the owner metrics:
	// the namespaces with the most parked pods have their own series, the
	// others are summed under otherNamespace.
	maxOwnerNamespaces = 20
	otherNamespace     = "_other"
	// ownerKindNone is the owner kind of pods without a controller.
	ownerKindNone  = "none"
	ownerKindOther = "other"
)

// metricOwnerKinds are the owner kinds the metrics name; any other kind
// (a custom resource's) is counted as ownerKindOther, so that the kind label
// stays bounded.
var metricOwnerKinds = []string{"CronJob", "Job", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "ReplicationController"}

// jobsResource is what the Job informer lists and watches, metadata only.
var jobsResource = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}

// owner is the controller a parked pod is reported on.
type owner struct {
	APIVersion, Kind, Namespace, Name string
	UID                               types.UID
}

func ownerOf(namespace string, ref *metav1.OwnerReference) owner {
	return owner{APIVersion: ref.APIVersion, Kind: ref.Kind, Namespace: namespace, Name: ref.Name, UID: ref.UID}
}

// ownedPod is what the report keeps of a parked pod.
type ownedPod struct {
	namespace string
	message   string
	ref       *metav1.OwnerReference // the pod's controller; nil for a bare pod
	owner     *owner                 // resolved owner; nil while a lookup is pending
	since     time.Time              // parked (with this message) at
}

// groupKey is one event: an owner and the message its pods are parked with.
type groupKey struct {
	uid     types.UID
	message string
}

// ownerGroup is the state of one owner event.
type ownerGroup struct {
	owner     owner
	message   string
	count     int
	firstSeen time.Time
	// written is the count last written (-1: never), at lastWrite.
	written   int
	lastWrite time.Time
	created   bool
	// failures is the number of writes that failed in a row, the first
	// at failingSince; the next is not tried before retryAt (ownerRetry).
	failures     int
	failingSince time.Time
	retryAt      time.Time
	// zeroSince is when its count last fell to zero.
	zeroSince time.Time
	// heard: the stale pass found an event of this group's name claiming
	// parked pods (the previous leader's, of the same owner's earlier
	// pods): if its pods leave before this replica writes, flush tells
	// that event no pod is parked any more, as for a group seen before
	// this replica led.
	heard bool
}

// ownerReport counts parked pods by owning controller and writes one event
// per owner and message. It resolves a pod's controller one step up where
// that is cheap: a ReplicaSet to its Deployment from the scheduler's own
// ReplicaSet informer, a Job to its CronJob from a metadata-only informer
// of Jobs (name, UID and controller reference of each Job are all it
// keeps), started on the first Job-owned pod that parks. It writes core/v1
// Events itself, as client-go's legacy recorder aggregates: one object per
// owner and message, created once and then patched (message, count,
// lastTimestamp). The events.k8s.io/v1 recorder cannot: its series never
// change the note, and the API refuses a changed note on update.
type ownerReport struct {
	client   kubernetes.Interface
	meta     metadata.Interface // nil: Job-owned pods are reported on their Job
	rsLister appslisters.ReplicaSetLister
	rsSynced cache.InformerSynced
	clock    clock.WithTicker
	writes   flowcontrol.RateLimiter
	instance string
	// profile is the scheduler profile the report serves ("" unknown):
	// its events' reportingInstance starts with it, so that the stale pass
	// (findStale) touches no other profile's or deployment's events.
	profile string

	mu      sync.Mutex
	pods    map[types.UID]ownedPod
	pending map[types.UID]struct{}
	// waiting are the pending pods of each Job (by Job UID), resolved when
	// the Job informer delivers their Job.
	waiting map[types.UID]map[types.UID]struct{}
	groups  map[groupKey]*ownerGroup
	bare    map[string]int // parked pods without a controller, by namespace
	// jobsWanted: a Job-owned pod parked; the next round starts the Job
	// informer, whose lister and sync state jobLister and jobsSynced are.
	jobsWanted bool
	jobLister  cache.GenericLister
	jobsSynced cache.InformerSynced
	forbidden  time.Time // Jobs may not be listed or watched; report on the Job until then
	// leadSince is when this replica's first leading round ran: a group
	// seen before may have an event of the previous leader's (the event's
	// name is the same on every replica).
	leadSince time.Time
	// staleChecked: the owner events claiming parked pods no report here
	// counts were looked for (findStale); stale holds those still to be
	// told that no pod is parked any more, found at staleSince.
	staleChecked bool
	stale        []*staleEvent
	staleSince   time.Time
	staleRetry   time.Time // a failed list is tried again then
}

// newOwnerReport returns the report; clk times its rounds and its rate
// limiters.
// Jobs are read through meta (nil: pods are reported on their Job).
func newOwnerReport(client kubernetes.Interface, meta metadata.Interface, factory informers.SharedInformerFactory, clk clock.WithTicker) *ownerReport {
	rs := factory.Apps().V1().ReplicaSets()
	host, _ := os.Hostname()
	if host == "" {
		host = "unknown"
	}
	return &ownerReport{
		client:   client,
		meta:     meta,
		rsLister: rs.Lister(),
		rsSynced: rs.Informer().HasSynced,
		clock:    clk,
		writes:   flowcontrol.NewTokenBucketRateLimiterWithClock(ownerEventsPerSecond, ownerEventsBurst, clk),
		instance: truncate(host, 128),
		pods:     map[types.UID]ownedPod{},
		pending:  map[types.UID]struct{}{},
		waiting:  map[types.UID]map[types.UID]struct{}{},
		groups:   map[groupKey]*ownerGroup{},
		bare:     map[string]int{},
	}
}

// park counts pod as parked with message. It reports whether the pod has a
// controller, whose event then speaks for the pod.
func (r *ownerReport) park(pod *v1.Pod, message string) bool {
	ref := metav1.GetControllerOf(pod)
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, had := r.pods[pod.UID]; had {
		if old.message == message && sameController(old.ref, ref) {
			return ref != nil
		}
		// Another reason, or another controller: orphaned (its owner
		// deleted with propagationPolicy Orphan) or adopted.
		r.removeLocked(pod.UID, old)
	}
	p := ownedPod{namespace: pod.Namespace, message: message, ref: ref, since: r.clock.Now()}
	if ref != nil {
		if o, ok := r.resolveLocked(pod.Namespace, ref); ok {
			p.owner = &o
		} else {
			r.pending[pod.UID] = struct{}{}
			if isJob(ref) {
				r.waitLocked(ref.UID, pod.UID)
			}
		}
	}
	r.pods[pod.UID] = p
	r.addLocked(p)
	return ref != nil
}

// sameController reports whether a and b are the same controller
// reference (or both none).
func sameController(a, b *metav1.OwnerReference) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.UID == b.UID && a.Kind == b.Kind && a.APIVersion == b.APIVersion && a.Name == b.Name
}

// remove forgets a pod that is no longer parked.
func (r *ownerReport) remove(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, had := r.pods[uid]; had {
		r.removeLocked(uid, p)
	}
}

func (r *ownerReport) addLocked(p ownedPod) {
	switch {
	case p.ref == nil:
		r.bare[p.namespace]++
	case p.owner != nil:
		key := groupKey{p.owner.UID, p.message}
		g := r.groups[key]
		if g == nil {
			g = &ownerGroup{owner: *p.owner, message: p.message, written: -1, firstSeen: r.clock.Now()}
			r.groups[key] = g
		}
		g.count++
		g.zeroSince = time.Time{}
	}
}

func (r *ownerReport) waitLocked(job, pod types.UID) {
	r.jobsWanted = true
	w := r.waiting[job]
	if w == nil {
		w = map[types.UID]struct{}{}
		r.waiting[job] = w
	}
	w[pod] = struct{}{}
}

func (r *ownerReport) unwaitLocked(pod types.UID, p ownedPod) {
	if p.ref == nil || !isJob(p.ref) {
		return
	}
	if w := r.waiting[p.ref.UID]; w != nil {
		delete(w, pod)
		if len(w) == 0 {
			delete(r.waiting, p.ref.UID)
		}
	}
}

func (r *ownerReport) removeLocked(uid types.UID, p ownedPod) {
	delete(r.pods, uid)
	delete(r.pending, uid)
	r.unwaitLocked(uid, p)
	switch {
	case p.ref == nil:
		if r.bare[p.namespace]--; r.bare[p.namespace] <= 0 {
			delete(r.bare, p.namespace)
		}
	case p.owner != nil:
		if g := r.groups[groupKey{p.owner.UID, p.message}]; g != nil {
			if g.count--; g.count <= 0 && g.zeroSince.IsZero() {
				g.zeroSince = r.clock.Now()
			}
		}
	}
}

func isJob(ref *metav1.OwnerReference) bool {
	gv, _ := schema.ParseGroupVersion(ref.APIVersion)
	return gv.Group == "batch" && ref.Kind == "Job"
}

// resolveLocked returns the owner a controller reference stands for, if
// it can be told from the informers: ok is false while it cannot yet.
func (r *ownerReport) resolveLocked(namespace string, ref *metav1.OwnerReference) (owner, bool) {
	gv, _ := schema.ParseGroupVersion(ref.APIVersion)
	switch {
	case gv.Group == "apps" && ref.Kind == "ReplicaSet":
		if !r.rsSynced() {
			return owner{}, false
		}
		rs, err := r.rsLister.ReplicaSets(namespace).Get(ref.Name)
		if err == nil && rs.UID == ref.UID {
			if c := metav1.GetControllerOf(rs); c != nil {
				return ownerOf(namespace, c), true
			}
		}
		return ownerOf(namespace, ref), true
	case isJob(ref):
		switch {
		case r.meta == nil:
			return ownerOf(namespace, ref), true
		case r.jobLister == nil || !r.jobsSynced():
			// Not started or not synced; refused: report on the Job.
			if r.clock.Now().Before(r.forbidden) {
				return ownerOf(namespace, ref), true
			}
			return owner{}, false
		}
		obj, err := r.jobLister.ByNamespace(namespace).Get(ref.Name)
		if err != nil {
			return owner{}, false
		}
		job, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok || job.UID != ref.UID {
			return owner{}, false // replaced: waits as for a Job not there
		}
		return jobOwner(namespace, ref, job), true
	}
	return ownerOf(namespace, ref), true
}

// jobOwner is the owner a Job's pods are reported on: the Job's controller
// (a CronJob), or the Job itself.
func jobOwner(namespace string, ref *metav1.OwnerReference, job *metav1.PartialObjectMetadata) owner {
	if c := metav1.GetControllerOfNoCopy(job); c != nil {
		return ownerOf(namespace, c)
	}
	return ownerOf(namespace, ref)
}

// resolvePending starts the Job informer when a Job-owned pod parked, and
// resolves the owners the informers can now tell: a ReplicaSet once the
// scheduler's informer synced, a Job that the Job informer's event did not
// resolve (it was there when its pod parked, or it never came: after
// ownerJobWait the pod is reported on its Job).
func (r *ownerReport) resolvePending(ctx context.Context) {
	r.startJobs(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	synced := r.jobLister != nil && r.jobsSynced()
	for job, pods := range r.waiting {
		for uid := range pods {
			p := r.pods[uid]
			o, ok := r.resolveLocked(p.namespace, p.ref)
			if !ok && synced && now.Sub(p.since) >= ownerJobWait {
				metricOwnerLookups.WithLabelValues("not-found").Inc()
				o, ok = ownerOf(p.namespace, p.ref), true
			}
			if !ok {
				continue
			}
			for uid := range pods {
				r.resolvedLocked(uid, r.pods[uid], o)
			}
			delete(r.waiting, job)
			break
		}
	}
	for uid := range r.pending {
		p := r.pods[uid]
		if isJob(p.ref) {
			continue
		}
		if o, ok := r.resolveLocked(p.namespace, p.ref); ok {
			r.resolvedLocked(uid, p, o)
		}
	}
}

// startJobs starts the metadata informer of Jobs on the first Job-owned
// pod: a scheduler whose parked pods come from no Job holds no Job. It
// keeps of each Job its name, UID and controller reference; it runs until
// ctx ends.
func (r *ownerReport) startJobs(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.jobsWanted || r.jobLister != nil || r.meta == nil {
		return
	}
	gi := metadatainformer.NewFilteredMetadataInformer(r.meta, jobsResource, metav1.NamespaceAll, 0, cache.Indexers{}, nil)
	inf := gi.Informer()
	if err := inf.SetTransform(stripJob); err != nil {
		klog.FromContext(ctx).Error(err, "Setting the Job informer's transform")
	}
	if err := inf.SetWatchErrorHandlerWithContext(r.jobsWatchError); err != nil {
		klog.FromContext(ctx).Error(err, "Setting the Job informer's error handler")
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    r.jobSeen,
		UpdateFunc: func(_, obj any) { r.jobSeen(obj) },
	}); err != nil {
		klog.FromContext(ctx).Error(err, "Watching Jobs for the owner report")
		return
	}
	r.jobLister, r.jobsSynced = gi.Lister(), inf.HasSynced
	go inf.RunWithContext(ctx)
}

// stripJob keeps of a Job's metadata what the report reads.
func stripJob(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil // a deletion's tombstone
	}
	out := &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion}}
	if c := metav1.GetControllerOfNoCopy(m); c != nil {
		out.OwnerReferences = []metav1.OwnerReference{*c}
	}
	return out, nil
}

// jobSeen resolves the pods waiting for a Job the informer delivered.
func (r *ownerReport) jobSeen(obj any) {
	job, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pods := r.waiting[job.UID]
	if len(pods) == 0 {
		return
	}
	metricOwnerLookups.WithLabelValues("ok").Inc()
	for uid := range pods {
		p := r.pods[uid]
		r.resolvedLocked(uid, p, jobOwner(p.namespace, p.ref, job))
	}
	delete(r.waiting, job.UID)
}

// jobsWatchError is the Job informer's list and watch error handler: a
// 403 (the RBAC of deploy/scheduler-*/rbac.yaml missing) reports the
// waiting pods on their Job for a while, logged once per backoff.
func (r *ownerReport) jobsWatchError(ctx context.Context, reflector *cache.Reflector, err error) {
	switch {
	case apierrors.IsForbidden(err):
		metricOwnerLookups.WithLabelValues("forbidden").Inc()
		r.mu.Lock()
		now := r.clock.Now()
		first := !now.Before(r.forbidden)
		r.forbidden = now.Add(forbiddenBackoff)
		r.mu.Unlock()
		if first {
			klog.FromContext(ctx).Error(err, "Cannot list and watch Jobs to find their CronJob; reporting parked pods on their Job. Grant list and watch on jobs.batch (deploy/scheduler-secondary/rbac.yaml)", "backoff", forbiddenBackoff)
		}
		return
	case errors.Is(err, io.EOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err):
		// A watch closed or expired: the informer relists, nothing failed.
	default:
		metricOwnerLookups.WithLabelValues("error").Inc()
	}
	cache.DefaultWatchErrorHandler(ctx, reflector, err)
}

func (r *ownerReport) resolvedLocked(uid types.UID, p ownedPod, o owner) {
	delete(r.pending, uid)
	r.unwaitLocked(uid, p)
	p.owner = &o
	r.pods[uid] = p
	r.addLocked(p)
}

// run resolves owners and, on the leader, writes the events that are due,
// every ownerRound; its counts are in the owner metrics while it runs.
func (r *ownerReport) run(ctx context.Context, leading func() bool) {
	ownerMetrics.add(r)
	defer ownerMetrics.remove(r)
	t := r.clock.NewTicker(ownerRound)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		r.round(ctx, leading())
	}
}

func (r *ownerReport) round(ctx context.Context, leading bool) {
	r.resolvePending(ctx)
	if leading {
		r.mu.Lock()
		now := r.clock.Now()
		if r.leadSince.IsZero() {
			r.leadSince = now
		}
		// Not while a parked pod's owner is unresolved (its Job not seen:
		// the Job informer not synced, or slow): it may be any of them.
		find := !r.staleChecked && now.Sub(r.leadSince) >= ownerStaleDelay && !now.Before(r.staleRetry) && len(r.pending) == 0
		r.mu.Unlock()
		if find {
			r.findStale(ctx)
		}
		r.flush(ctx)
		return
	}
	// A standby writes nothing; it forgets the owners whose pods all left
	// long enough ago for the leader to have said so (ownerStandbyKeep):
	// if the leader dies first, this replica says it when it leads.
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stale = nil // a standby tells none (kube-scheduler exits when it loses the lease)
	now := r.clock.Now()
	for key, g := range r.groups {
		if g.count <= 0 && g.written < 0 && now.Sub(g.zeroSince) >= ownerStandbyKeep {
			delete(r.groups, key)
		}
	}
}

// ownerWrite is one event write, taken from a group under the lock.
type ownerWrite struct {
	key       groupKey
	owner     owner
	message   string
	count     int
	firstSeen time.Time
	created   bool
	never     bool
	lastWrite time.Time
	// patchOnly: tell an event another replica may have written that no
	// pod is parked any more; none there is nothing to say.
	patchOnly bool
}

// flush writes the events that are due, within the write budget: new ones
// first, then the longest unwritten.
func (r *ownerReport) flush(ctx context.Context) {
	now := r.clock.Now()
	r.mu.Lock()
	var due []ownerWrite
	for key, g := range r.groups {
		// A group this replica never wrote whose pods all left: nothing to
		// say, unless the previous leader said something (the group was
		// seen before this replica led): then its event, if there, is
		// told that no pod is parked any more (patched, never created).
		heard := g.written < 0 && (g.heard || !g.firstSeen.After(r.leadSince))
		switch {
		case g.count <= 0 && g.written < 0 && !heard:
			delete(r.groups, key) // parked and released unseen: nothing to say
			continue
		case g.written >= 0 && now.Sub(g.lastWrite) < ownerUpdateInterval:
			continue
		case g.count == g.written && now.Sub(g.lastWrite) < ownerRefreshInterval:
			continue
		case now.Before(g.retryAt):
			continue
		}
		due = append(due, ownerWrite{key: key, owner: g.owner, message: g.message, count: max(g.count, 0),
			firstSeen: g.firstSeen, created: g.created, never: g.written < 0, lastWrite: g.lastWrite,
			patchOnly: g.count <= 0 && g.written < 0})
	}
	r.mu.Unlock()
	slices.SortFunc(due, func(a, b ownerWrite) int {
		if a.never != b.never {
			if a.never {
				return -1
			}
			return 1
		}
		return a.lastWrite.Compare(b.lastWrite)
	})
	defer r.tellStale(ctx, now)
	for _, w := range due {
		if !r.writes.TryAccept() {
			return
		}
		err := r.write(ctx, w, now)
		r.mu.Lock()
		if g := r.groups[w.key]; g != nil {
			switch {
			case err == nil:
				g.written, g.lastWrite, g.created = w.count, now, true
				g.failures, g.failingSince, g.retryAt = 0, time.Time{}, time.Time{}
				if g.count <= 0 && w.count == 0 {
					delete(r.groups, w.key)
				}
			case g.count <= 0 && (namespaceGone(err) || (g.failures > 0 && now.Sub(g.failingSince) >= ownerGiveUp)):
				// None of its pods is parked, and what was said of them
				// cannot be taken back: the namespace is gone (its
				// events with it) or going, or the API has refused it
				// for ownerGiveUp. The event expires with the event TTL.
				delete(r.groups, w.key)
			default:
				// Tried again later, behind the owners that can be
				// written: a group that always fails (its namespace
				// terminating) must not take the whole write budget.
				if g.failures == 0 {
					g.failingSince = now
				}
				g.failures++
				g.retryAt = now.Add(ownerRetry(g.failures))
			}
		}
		r.mu.Unlock()
	}
}

// findStale lists the owner events in the cluster (once, ownerStaleDelay
// after this replica leads) and keeps those that claim parked pods while
// no report of this process holds their owner: the events of a previous
// leader, or of this replica before a restart, whose pods left before it
// could say so.
func (r *ownerReport) findStale(ctx context.Context) {
	list, err := r.client.CoreV1().Events(metav1.NamespaceAll).List(ctx, metav1.ListOptions{ResourceVersion: "0",
		FieldSelector: fields.Set{"reason": OwnerEventReason}.String()})
	if err != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		if apierrors.IsForbidden(err) {
			// No list on events (deploy/scheduler-*'s RBAC): such events
			// expire with the event TTL.
			r.staleChecked = true
			klog.FromContext(ctx).Error(err, "Cannot list events to find the owner events that a previous leader left claiming parked pods; they expire with the event TTL. Grant list on events (deploy/scheduler-secondary/rbac.yaml)")
			return
		}
		r.staleRetry = r.clock.Now().Add(ownerUpdateInterval)
		klog.FromContext(ctx).Error(err, "Listing owner events to find those that claim parked pods no more parked; trying again", "after", ownerUpdateInterval)
		return
	}
	claiming := map[types.NamespacedName]bool{}
	for _, e := range list.Items {
		if e.Reason == OwnerEventReason && e.Type == v1.EventTypeWarning && e.ReportingController == ownerReportingController &&
			(r.profile == "" || strings.HasPrefix(e.ReportingInstance, r.profile+"/")) {
			claiming[types.NamespacedName{Namespace: e.Namespace, Name: e.Name}] = true
		}
	}
	held := r.hear(claiming)
	var stale []*staleEvent
	for _, e := range list.Items {
		if key := (types.NamespacedName{Namespace: e.Namespace, Name: e.Name}); claiming[key] && !held[key] {
			e.ManagedFields = nil // only what a patch needs is read
			stale = append(stale, &staleEvent{Event: e})
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.staleChecked, r.staleSince, r.stale = true, r.clock.Now(), stale
}

// setProfile has the report's events name the scheduler profile it serves
// in their reportingInstance, ahead of the host name.
func (r *ownerReport) setProfile(profile string) {
	r.profile = profile
	r.instance = truncate(profile+"/"+r.instance, 128)
}

// hear returns those of the owner events claiming parked pods (the stale
// pass's) that a report of this process (r or another profile's) holds:
// its own flush writes them. Each group holding one is marked heard, so
// that its flush tells the event if its pods leave before it writes. One
// pass over every report's groups, whatever the number of events; it
// takes each report's lock in turn, and the caller holds none.
func (r *ownerReport) hear(claiming map[types.NamespacedName]bool) map[types.NamespacedName]bool {
	held := map[types.NamespacedName]bool{}
	for _, x := range append(ownerMetrics.others(r), r) {
		x.mu.Lock()
		for _, g := range x.groups {
			if key := (types.NamespacedName{Namespace: g.owner.Namespace, Name: ownerEventName(g.owner, g.message)}); claiming[key] {
				held[key] = true
				g.heard = true
			}
		}
		x.mu.Unlock()
	}
	return held
}

// tellStale tells the stale owner events, within the write budget, that no
// pod is parked any more (patched, never created); one whose owner a report
// holds again is left to it. While a parked pod's owner is not resolved
// yet (its Job not seen), it tells none: that pod may be of any of them. A
// failed write is tried again after ownerRetry, behind the others; one
// refused for ownerGiveUp is given up.
func (r *ownerReport) tellStale(ctx context.Context, now time.Time) {
	r.mu.Lock()
	if len(r.pending) > 0 {
		r.mu.Unlock()
		return
	}
	var due []*staleEvent
	for _, e := range r.stale {
		if !now.Before(e.retryAt) {
			due = append(due, e)
		}
	}
	r.mu.Unlock()
	done := map[*staleEvent]bool{}
	for _, e := range due {
		key := types.NamespacedName{Namespace: e.Namespace, Name: e.Name}
		if !r.hear(map[types.NamespacedName]bool{key: true})[key] {
			if !r.writes.TryAccept() {
				break
			}
			why := e.Message
			if _, after, ok := strings.Cut(e.Message, " parked: "); ok {
				why = after
			}
			err := r.patchEvent(ctx, e.Namespace, e.Name, map[string]any{"message": ownerNote(e.InvolvedObject.Kind, 0, why),
				"type": v1.EventTypeNormal, "lastTimestamp": metav1.NewTime(now)})
			switch {
			case err == nil:
				metricOwnerEventWrites.WithLabelValues("updated").Inc()
			case apierrors.IsNotFound(err): // expired or deleted meanwhile
			default:
				metricOwnerEventWrites.WithLabelValues("error").Inc()
				klog.FromContext(ctx).Error(err, "Telling an owner event that no pod is parked any more", "event", klog.KRef(e.Namespace, e.Name))
				if now.Sub(r.staleSince) < ownerGiveUp {
					r.mu.Lock()
					e.failures++
					e.retryAt = now.Add(ownerRetry(e.failures))
					r.mu.Unlock()
					continue
				}
			}
		}
		done[e] = true
	}
	r.mu.Lock()
	r.stale = slices.DeleteFunc(r.stale, func(e *staleEvent) bool { return done[e] })
	r.mu.Unlock()
}

// staleEvent is an owner event the stale pass is to tell.
type staleEvent struct {
	v1.Event
	failures int
	retryAt  time.Time
}

// ownerRetry is how long a group waits after its failures-th failed
// write in a row: ownerRound doubled each time, at most ownerUpdateInterval.
func ownerRetry(failures int) time.Duration {
	d := ownerRound
	for range min(failures, 16) {
		if d *= 2; d >= ownerUpdateInterval {
			return ownerUpdateInterval
		}
	}
	return d
}

// namespaceGone reports whether a failed event write says its namespace is
// gone (an event create in a deleted namespace is NotFound) or being
// deleted (NamespaceLifecycle refuses new objects there).
func namespaceGone(err error) bool {
	return apierrors.IsNotFound(err) || apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause)
}

// patchEvent merge-patches the owner event namespace/name with set.
func (r *ownerReport) patchEvent(ctx context.Context, namespace, name string, set map[string]any) error {
	body, err := json.Marshal(set)
	if err != nil {
		return err
	}
	_, err = r.client.CoreV1().Events(namespace).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{})
	return err
}

// write creates or updates the event of one owner and message.
func (r *ownerReport) write(ctx context.Context, w ownerWrite, now time.Time) error {
	events := r.client.CoreV1().Events(w.owner.Namespace)
	name := ownerEventName(w.owner, w.message)
	typ, note := v1.EventTypeWarning, ownerNote(w.owner.Kind, w.count, w.message)
	if w.count == 0 {
		typ = v1.EventTypeNormal
	}
	count := int32(max(w.count, 1))
	create := func() error {
		_, err := events.Create(ctx, &v1.Event{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: w.owner.Namespace},
			InvolvedObject: v1.ObjectReference{APIVersion: w.owner.APIVersion, Kind: w.owner.Kind, Namespace: w.owner.Namespace,
				Name: w.owner.Name, UID: w.owner.UID},
			Reason: OwnerEventReason, Message: note, Type: typ, Count: count,
			FirstTimestamp: metav1.NewTime(w.firstSeen), LastTimestamp: metav1.NewTime(now),
			Source: v1.EventSource{Component: Name}, Action: ownerEventAction,
			ReportingController: ownerReportingController, ReportingInstance: r.instance,
		}, metav1.CreateOptions{})
		return err
	}
	patch := func() error {
		return r.patchEvent(ctx, w.owner.Namespace, name, map[string]any{"message": note, "type": typ, "count": count,
			"lastTimestamp": metav1.NewTime(now)})
	}
	var err error
	if w.patchOnly {
		if err = patch(); apierrors.IsNotFound(err) {
			return nil
		}
	} else if w.created {
		// Expired (the event TTL) or deleted: create it again.
		if err = patch(); apierrors.IsNotFound(err) {
			err = create()
		}
	} else if err = create(); apierrors.IsAlreadyExists(err) {
		// Written before a restart, or by the previous leader.
		err = patch()
	}
	switch {
	case err == nil && w.created:
		metricOwnerEventWrites.WithLabelValues("updated").Inc()
	case err == nil:
		metricOwnerEventWrites.WithLabelValues("created").Inc()
	default:
		metricOwnerEventWrites.WithLabelValues("error").Inc()
		klog.FromContext(ctx).Error(err, "Writing the event of an owner of parked pods", "owner", klog.KRef(w.owner.Namespace, w.owner.Name), "kind", w.owner.Kind)
	}
	return err
}

// ownerEventName is the name of the one event per owner and message.
func ownerEventName(o owner, message string) string {
	h := fnv.New64a()
	h.Write([]byte(o.UID))
	h.Write([]byte{0})
	h.Write([]byte(message))
	suffix := fmt.Sprintf(".hopeless.%016x", h.Sum64())
	return truncate(strings.ToLower(o.Name), 253-len(suffix)) + suffix
}

// ownerNote is the event's message: "3,912 pods of this CronJob are
// parked: no node or node group tolerates taint dedicated=batch...".
func ownerNote(kind string, count int, message string) string {
	why := strings.TrimPrefix(message, shapes.MessagePrefix)
	var note string
	switch count {
	case 0:
		note = fmt.Sprintf("No pods of this %s are parked any more (they were: %s)", kind, why)
	case 1:
		note = fmt.Sprintf("1 pod of this %s is parked: %s", kind, why)
	default:
		note = fmt.Sprintf("%s pods of this %s are parked: %s", thousands(count), kind, why)
	}
	return truncate(note, maxNoteLength)
}

func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.TrimRight(s[:n], ".-")
}

// ownerCount is the number of parked pods of one owner (or, with kind
// ownerKindNone, of the bare pods of a namespace).
type ownerCount struct {
	kind, namespace string
	n               int
	bare            bool
}

// counts returns the parked pods by owner, and the bare ones by namespace.
func (r *ownerReport) counts() []ownerCount {
	r.mu.Lock()
	defer r.mu.Unlock()
	perOwner := map[types.UID]*ownerCount{}
	for _, g := range r.groups {
		if g.count <= 0 {
			continue
		}
		c := perOwner[g.owner.UID]
		if c == nil {
			c = &ownerCount{kind: metricOwnerKind(g.owner.Kind), namespace: g.owner.Namespace}
			perOwner[g.owner.UID] = c
		}
		c.n += g.count
	}
	out := make([]ownerCount, 0, len(perOwner)+len(r.bare))
	for _, c := range perOwner {
		out = append(out, *c)
	}
	for ns, n := range r.bare {
		out = append(out, ownerCount{kind: ownerKindNone, namespace: ns, n: n, bare: true})
	}
	return out
}

// ownerSeries computes the owner metrics from the counts: parked pods by
// owner kind and namespace, and the largest count of any one owner. The
// namespaces with the most parked pods keep their name, at most
// maxOwnerNamespaces; the others are summed under otherNamespace.
func ownerSeries(counts []ownerCount) (sums, maxes map[[2]string]int) {
	byNamespace := map[string]int{}
	for _, c := range counts {
		byNamespace[c.namespace] += c.n
	}
	namespaces := make([]string, 0, len(byNamespace))
	for ns := range byNamespace {
		namespaces = append(namespaces, ns)
	}
	slices.SortFunc(namespaces, func(a, b string) int {
		if byNamespace[a] != byNamespace[b] {
			return byNamespace[b] - byNamespace[a]
		}
		return strings.Compare(a, b)
	})
	named := map[string]bool{}
	for _, ns := range namespaces[:min(len(namespaces), maxOwnerNamespaces)] {
		named[ns] = true
	}
	sums, maxes = map[[2]string]int{}, map[[2]string]int{}
	for _, c := range counts {
		ns := otherNamespace
		if named[c.namespace] {
			ns = c.namespace
		}
		k := [2]string{c.kind, ns}
		sums[k] += c.n
		one := c.n
		if c.bare {
			one = 1 // each bare pod is its own owner
		}
		maxes[k] = max(maxes[k], one)
	}
	return sums, maxes
}

// ownerCollector exports the owner metrics of every running report at
// scrape time (one report per profile that enables the plugin).
type ownerCollector struct {
	metrics.BaseStableCollector
	mu      sync.Mutex
	reports map[*ownerReport]bool
}

var ownerMetrics = &ownerCollector{reports: map[*ownerReport]bool{}}

func (c *ownerCollector) add(r *ownerReport) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reports[r] = true
}

// others returns the running reports other than r.
func (c *ownerCollector) others(r *ownerReport) []*ownerReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*ownerReport
	for x := range c.reports {
		if x != r {
			out = append(out, x)
		}
	}
	return out
}

func (c *ownerCollector) remove(r *ownerReport) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.reports, r)
}

func (c *ownerCollector) DescribeWithStability(ch chan<- *metrics.Desc) {
	ch <- descOwnerParked
	ch <- descOwnerMaxParked
}

func (c *ownerCollector) CollectWithStability(ch chan<- metrics.Metric) {
	c.mu.Lock()
	var counts []ownerCount
	for r := range c.reports {
		counts = append(counts, r.counts()...)
	}
	c.mu.Unlock()
	sums, maxes := ownerSeries(counts)
	for k, n := range sums {
		ch <- metrics.NewLazyConstMetric(descOwnerParked, metrics.GaugeValue, float64(n), k[0], k[1])
		ch <- metrics.NewLazyConstMetric(descOwnerMaxParked, metrics.GaugeValue, float64(maxes[k]), k[0], k[1])
	}
}

func metricOwnerKind(kind string) string {
	if slices.Contains(metricOwnerKinds, kind) {
		return kind
	}
	return ownerKindOther
}
