package hopeless

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
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
	// ownerEventsPerSecond and ownerEventsBurst bound all owner event
	// writes of the replica together.
	ownerEventsPerSecond = 2
	ownerEventsBurst     = 10
	// ownerLookupsPerSecond and ownerLookupsBurst bound the GETs of Jobs
	// (to find their CronJob), which no scheduler informer holds.
	ownerLookupsPerSecond = 50
	ownerLookupsBurst     = 100
	// maxOwnerLookupsCached bounds the Job -> owner cache; it is cleared
	// when full.
	maxOwnerLookupsCached = 10000
	// forbiddenBackoff: after a 403 on Jobs, the report stops asking for
	// this long and reports the pods on their Job.
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
}

// ownerReport counts parked pods by owning controller and writes one event
// per owner and message. It resolves a pod's controller one step up where
// that is cheap: a ReplicaSet to its Deployment from the scheduler's own
// ReplicaSet informer, a Job to its CronJob with a GET (no scheduler
// informer holds Jobs), cached per Job, rate limited. It writes core/v1
// Events itself, as client-go's legacy recorder aggregates: one object per
// owner and message, created once and then patched (message, count,
// lastTimestamp). The events.k8s.io/v1 recorder cannot: its series never
// change the note, and the API refuses a changed note on update.
type ownerReport struct {
	client   kubernetes.Interface
	rsLister appslisters.ReplicaSetLister
	rsSynced cache.InformerSynced
	clock    clock.WithTicker
	writes   flowcontrol.RateLimiter
	lookups  flowcontrol.RateLimiter
	instance string

	mu        sync.Mutex
	pods      map[types.UID]ownedPod
	pending   map[types.UID]struct{}
	groups    map[groupKey]*ownerGroup
	bare      map[string]int // parked pods without a controller, by namespace
	jobOwners map[types.UID]owner
	forbidden time.Time // no Job lookups until then
}

// newOwnerReport returns the report; clk times its rounds and its rate
// limiters.
func newOwnerReport(client kubernetes.Interface, factory informers.SharedInformerFactory, clk clock.WithTicker) *ownerReport {
	rs := factory.Apps().V1().ReplicaSets()
	host, _ := os.Hostname()
	if host == "" {
		host = "unknown"
	}
	return &ownerReport{
		client:    client,
		rsLister:  rs.Lister(),
		rsSynced:  rs.Informer().HasSynced,
		clock:     clk,
		writes:    flowcontrol.NewTokenBucketRateLimiterWithClock(ownerEventsPerSecond, ownerEventsBurst, clk),
		lookups:   flowcontrol.NewTokenBucketRateLimiterWithClock(ownerLookupsPerSecond, ownerLookupsBurst, clk),
		instance:  truncate(host, 128),
		pods:      map[types.UID]ownedPod{},
		pending:   map[types.UID]struct{}{},
		groups:    map[groupKey]*ownerGroup{},
		bare:      map[string]int{},
		jobOwners: map[types.UID]owner{},
	}
}

// park counts pod as parked with message. It reports whether the pod has a
// controller, whose event then speaks for the pod.
func (r *ownerReport) park(pod *v1.Pod, message string) bool {
	ref := metav1.GetControllerOf(pod)
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, had := r.pods[pod.UID]; had {
		if old.message == message {
			return ref != nil
		}
		r.removeLocked(pod.UID, old)
	}
	p := ownedPod{namespace: pod.Namespace, message: message, ref: ref}
	if ref != nil {
		if o, ok := r.resolveLocked(pod.Namespace, ref); ok {
			p.owner = &o
		} else {
			r.pending[pod.UID] = struct{}{}
		}
	}
	r.pods[pod.UID] = p
	r.addLocked(p)
	return ref != nil
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
	}
}

func (r *ownerReport) removeLocked(uid types.UID, p ownedPod) {
	delete(r.pods, uid)
	delete(r.pending, uid)
	switch {
	case p.ref == nil:
		if r.bare[p.namespace]--; r.bare[p.namespace] <= 0 {
			delete(r.bare, p.namespace)
		}
	case p.owner != nil:
		if g := r.groups[groupKey{p.owner.UID, p.message}]; g != nil {
			g.count--
		}
	}
}

// resolveLocked returns the owner a controller reference stands for, if
// it can be told without a request: ok is false when a lookup is needed.
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
	case gv.Group == "batch" && ref.Kind == "Job":
		o, ok := r.jobOwners[ref.UID]
		return o, ok
	}
	return ownerOf(namespace, ref), true
}

// resolvePending resolves the owners that need a lookup, within the lookup
// budget; the rest wait for the next round.
func (r *ownerReport) resolvePending(ctx context.Context) {
	r.mu.Lock()
	todo := map[types.UID]ownedPod{} // by controller UID
	for uid := range r.pending {
		p := r.pods[uid]
		if o, ok := r.resolveLocked(p.namespace, p.ref); ok {
			r.resolvedLocked(uid, p, o)
			continue
		}
		todo[p.ref.UID] = p
	}
	r.mu.Unlock()

	resolved := map[types.UID]owner{}
	for uid, p := range todo {
		gv, _ := schema.ParseGroupVersion(p.ref.APIVersion)
		if gv.Group != "batch" || p.ref.Kind != "Job" {
			continue // a ReplicaSet while the informer syncs
		}
		if r.lookupsForbidden() {
			resolved[uid] = ownerOf(p.namespace, p.ref)
			continue
		}
		if !r.lookups.TryAccept() {
			break
		}
		o, ok := r.lookupJob(ctx, p.namespace, p.ref)
		if ok {
			resolved[uid] = o
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.jobOwners)+len(resolved) > maxOwnerLookupsCached {
		r.jobOwners = map[types.UID]owner{}
	}
	for uid, o := range resolved {
		r.jobOwners[uid] = o
	}
	for uid := range r.pending {
		p := r.pods[uid]
		if o, ok := resolved[p.ref.UID]; ok {
			r.resolvedLocked(uid, p, o)
		}
	}
}

func (r *ownerReport) lookupsForbidden() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.clock.Now().Before(r.forbidden)
}

func (r *ownerReport) resolvedLocked(uid types.UID, p ownedPod, o owner) {
	delete(r.pending, uid)
	p.owner = &o
	r.pods[uid] = p
	r.addLocked(p)
}

// lookupJob returns the owner of the Job ref: its controller (a CronJob),
// or the Job itself. ok is false on an error worth retrying.
func (r *ownerReport) lookupJob(ctx context.Context, namespace string, ref *metav1.OwnerReference) (owner, bool) {
	// ResourceVersion 0: served from the apiserver's watch cache.
	job, err := r.client.BatchV1().Jobs(namespace).Get(ctx, ref.Name, metav1.GetOptions{ResourceVersion: "0"})
	switch {
	case err == nil && job.UID == ref.UID:
		metricOwnerLookups.WithLabelValues("ok").Inc()
		if c := metav1.GetControllerOf(job); c != nil {
			return ownerOf(namespace, c), true
		}
		return ownerOf(namespace, ref), true
	case err == nil || apierrors.IsNotFound(err):
		// Gone or replaced: the pod goes soon too; report it on the Job.
		metricOwnerLookups.WithLabelValues("not-found").Inc()
		return ownerOf(namespace, ref), true
	case apierrors.IsForbidden(err):
		metricOwnerLookups.WithLabelValues("forbidden").Inc()
		klog.FromContext(ctx).Error(err, "Cannot read Jobs to find their CronJob; reporting parked pods on their Job. Grant get on jobs.batch (deploy/scheduler-secondary/rbac.yaml)", "backoff", forbiddenBackoff)
		r.mu.Lock()
		r.forbidden = r.clock.Now().Add(forbiddenBackoff)
		r.mu.Unlock()
		return ownerOf(namespace, ref), true
	}
	metricOwnerLookups.WithLabelValues("error").Inc()
	klog.FromContext(ctx).V(2).Info("Looking up the owner of a Job failed; retrying", "job", klog.KRef(namespace, ref.Name), "err", err)
	return owner{}, false
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
		r.flush(ctx)
		return
	}
	// A standby writes nothing; it forgets the owners whose pods all left,
	// as flush does on the leader.
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, g := range r.groups {
		if g.count <= 0 && g.written < 0 {
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
}

// flush writes the events that are due, within the write budget: new ones
// first, then the longest unwritten.
func (r *ownerReport) flush(ctx context.Context) {
	now := r.clock.Now()
	r.mu.Lock()
	var due []ownerWrite
	for key, g := range r.groups {
		switch {
		case g.count <= 0 && g.written < 0:
			delete(r.groups, key) // parked and released unseen: nothing to say
			continue
		case g.written >= 0 && now.Sub(g.lastWrite) < ownerUpdateInterval:
			continue
		case g.count == g.written && now.Sub(g.lastWrite) < ownerRefreshInterval:
			continue
		}
		due = append(due, ownerWrite{key: key, owner: g.owner, message: g.message, count: max(g.count, 0),
			firstSeen: g.firstSeen, created: g.created, never: g.written < 0, lastWrite: g.lastWrite})
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
	for _, w := range due {
		if !r.writes.TryAccept() {
			return
		}
		err := r.write(ctx, w, now)
		r.mu.Lock()
		if g := r.groups[w.key]; g != nil && err == nil {
			g.written, g.lastWrite, g.created = w.count, now, true
			if g.count <= 0 && w.count == 0 {
				delete(r.groups, w.key)
			}
		}
		r.mu.Unlock()
	}
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
		body, err := json.Marshal(map[string]any{"message": note, "type": typ, "count": count, "lastTimestamp": metav1.NewTime(now)})
		if err != nil {
			return err
		}
		_, err = events.Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{})
		return err
	}
	var err error
	if w.created {
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
