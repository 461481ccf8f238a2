package hopeless

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// statusWriter tells the user why a pod is parked: for pods parked at
// PreEnqueue (which the scheduler writes nothing for) the PodScheduled
// condition, per pod; and an event, per pod only for pods without a
// controller. The pods of a controller are reported together on the
// controller, one event per message, by owners (owners.go): with thousands
// of parked pods, one event each would itself be apiserver load. Writes are rate limited, off the
// scheduling path, and wait for a lull in binding, so that they compete with
// binds as little as possible. Only the leader writes, a write never lands
// on a bound pod, and a write still queued when the pod is released is
// dropped.
type statusWriter struct {
	// lastBind is when the plugin last saw a pod get bound (unix nanos):
	// writes wait for a lull in binding, for at most maxDefer.
	lastBind atomic.Int64
	client   kubernetes.Interface
	recorder events.EventRecorderLogger
	limiter  flowcontrol.RateLimiter
	queue    workqueue.TypedInterface[types.UID]
	clock    clock.Clock
	// current returns the pod as last seen (an informer's copy will do: the
	// patch carries its resourceVersion as a precondition).
	current func(ctx context.Context, namespace, name string) (*v1.Pod, error)
	// leading reports whether this replica schedules; standbys write nothing.
	leading func() bool
	// owners reports the pods of a controller on the controller; nil: every
	// pod gets its own event.
	owners *ownerReport

	mu       sync.Mutex
	reported map[types.UID]string
	// evented is the message of the pod's own event (pods without a
	// controller), once written: one event per pod and message, whatever
	// the releases, failed writes and re-reports around it.
	evented map[types.UID]string
	// released holds the pods released after their report was written:
	// their attempts since may have had the scheduler overwrite the
	// condition, so a park for the reported reason writes it again (an
	// event is still written once per pod and reason).
	released map[types.UID]struct{}
	pending  map[types.UID]statusItem
	// leads: this replica leads, seen by awaitLeadership; until then
	// pending items are not queued.
	leads bool
	// leadSince is when this replica was seen to lead: a pod created
	// later (eventCheckSkew allowing for the API server's clock) can have
	// no event of another replica's, nor of this one's before a restart.
	leadSince time.Time
	// eventsMu guards eventIndex, the Hopeless events per namespace
	// (eventSaid).
	eventsMu   sync.Mutex
	eventIndex map[string]*eventIndex
	// eventsForbidden logs, once, that events cannot be listed.
	eventsForbidden sync.Once
	// writing is the item being written per pod; cancel removes it, and
	// the write checks it is still there right before each API call, so
	// that a pod released while its write waits gets none.
	writing map[types.UID]*statusItem
}

type statusItem struct {
	pod     *v1.Pod
	message string
	gated   bool // write the condition
	event   bool // write the pod's own event
	// again: the pod was parked again for the reason reported before its
	// release; a scheduling attempt since may have overwritten the
	// condition, later than the informer's copy knows.
	again bool
}

const (
	// leaderPoll is how often a standby checks whether it leads now.
	leaderPoll = time.Second
	// bindQuiet is how long after a bind the writer waits before writing.
	bindQuiet = 300 * time.Millisecond
	// eventCheckSkew: a pod created this long after this replica leads is
	// not looked for in the API server before its event is written.
	eventCheckSkew = time.Minute
	// eventIndexTTL: how long a namespace's listed events answer eventSaid.
	eventIndexTTL = time.Minute
	// maxDefer bounds how long a write yields to binds.
	maxDefer = 5 * time.Second
)

// noteBind records that a pod was bound just now.
func (w *statusWriter) noteBind() { w.lastBind.Store(w.clock.Now().UnixNano()) }

// yieldToBinds waits while the scheduler is binding pods, up to maxDefer.
func (w *statusWriter) yieldToBinds(ctx context.Context) {
	deadline := w.clock.Now().Add(maxDefer)
	for w.clock.Now().Before(deadline) {
		if w.clock.Since(time.Unix(0, w.lastBind.Load())) > bindQuiet {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-w.clock.After(bindQuiet / 3):
		}
	}
}

// waitForLeadership blocks until this replica leads, or ctx ends.
func (w *statusWriter) waitForLeadership(ctx context.Context) bool {
	for !w.leading() {
		select {
		case <-ctx.Done():
			return false
		case <-w.clock.After(leaderPoll):
		}
	}
	return true
}

func newStatusWriter(client kubernetes.Interface, recorder events.EventRecorderLogger, qps float64, clk clock.Clock) *statusWriter {
	burst := int(qps)
	if burst < 1 {
		burst = 1
	}
	w := &statusWriter{
		client:   client,
		recorder: recorder,
		// Not on clk: client-go's token bucket waits on the real clock
		// (rate.Limiter.Wait) whatever clock it is given.
		limiter:    flowcontrol.NewTokenBucketRateLimiter(float32(qps), burst),
		queue:      workqueue.NewTyped[types.UID](),
		clock:      clk,
		leading:    newLeaderCheck(legacyregistry.DefaultGatherer, nil, clk).leading,
		reported:   map[types.UID]string{},
		evented:    map[types.UID]string{},
		eventIndex: map[string]*eventIndex{},
		released:   map[types.UID]struct{}{},
		pending:    map[types.UID]statusItem{},
		writing:    map[types.UID]*statusItem{},
	}
	w.current = func(ctx context.Context, namespace, name string) (*v1.Pod, error) {
		return client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	}
	return w
}

// report schedules the event (and condition) for pod, unless this message
// was already reported for it. The pod of a controller gets no event of its
// own: it is counted in its owner's.
func (w *statusWriter) report(pod *v1.Pod, message string, gated bool) {
	event := true
	if w.owners != nil && w.owners.park(pod, message) {
		event = false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, released := w.released[pod.UID]
	delete(w.released, pod.UID)
	// Its own event, unless written already (the write checks again): a
	// pod orphaned since its report needs one now.
	event = event && w.evented[pod.UID] != message
	if reported, ok := w.reported[pod.UID]; ok && reported == message {
		// Parked again for the reason reported before its release: the
		// condition again (the write skips it if it is still there).
		again := released && gated
		if gated && !again && !hasCondition(pod, message) {
			// The pod's copy lacks the condition and no write of it is
			// on its way: overwritten since (an attempt's condition
			// that landed after our write read the pod), or our write
			// not seen yet (the write asks the API server).
			_, queued := w.pending[pod.UID]
			_, inFlight := w.writing[pod.UID]
			again = !queued && !inFlight
		}
		if !again && !event {
			return
		}
		item, queued := w.pending[pod.UID]
		if !queued {
			item = statusItem{message: message}
		}
		item.pod = pod
		if again {
			item.gated, item.again = true, true
		}
		item.event = item.event || event
		w.pending[pod.UID] = item
		w.enqueueLocked(pod.UID)
		return
	}
	w.reported[pod.UID] = message
	if !gated && !event {
		// Rejected at PreFilter: the scheduler writes the condition.
		return
	}
	w.pending[pod.UID] = statusItem{pod: pod, message: message, gated: gated, event: event}
	w.enqueueLocked(pod.UID)
}

// enqueueLocked hands pod uid's pending item to the write loop, once this
// replica leads; until then it waits in pending only, which a release or a
// forget clears (the workqueue cannot forget a key: a standby's queue
// would grow with every pod parked while it stands by). w.mu is held.
func (w *statusWriter) enqueueLocked(uid types.UID) {
	if w.leads {
		w.queue.Add(uid)
	}
}

// awaitLeadership hands the pending items to the write loop once this
// replica leads (leadership, once had, is kept: kube-scheduler exits when
// it loses the lease).
func (w *statusWriter) awaitLeadership(ctx context.Context) {
	if !w.waitForLeadership(ctx) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.leads, w.leadSince = true, w.clock.Now()
	for uid := range w.pending {
		w.queue.Add(uid)
	}
}

// cancel drops the write still queued (or in flight) for a released pod.
// The pod stays reported, as released: parking it again for the same
// reason writes its condition again, unless the API server still holds it
// (the scheduler may have overwritten it in an attempt since, or the write
// cancelled here may or may not have made it), and its event only if none
// was written (evented).
func (w *statusWriter) cancel(uid types.UID) {
	if w.owners != nil {
		w.owners.remove(uid)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.pending, uid)
	delete(w.writing, uid)
	if _, ok := w.reported[uid]; ok {
		w.released[uid] = struct{}{}
	}
}

// forget drops what was reported for a pod that is bound or gone.
func (w *statusWriter) forget(uid types.UID) {
	if w.owners != nil {
		w.owners.remove(uid)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.reported, uid)
	delete(w.evented, uid)
	delete(w.released, uid)
	delete(w.pending, uid)
	delete(w.writing, uid)
}

func (w *statusWriter) run(ctx context.Context) {
	if w.owners != nil {
		go w.owners.run(ctx, w.leading)
	}
	w.runWrites(ctx)
}

// runWrites writes the queued conditions and pod events until ctx ends.
func (w *statusWriter) runWrites(ctx context.Context) {
	go w.awaitLeadership(ctx)
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	for {
		uid, shutdown := w.queue.Get()
		if shutdown {
			return
		}
		w.process(ctx, uid)
		w.queue.Done(uid)
	}
}

// process writes what is queued for pod uid, once this replica leads, the
// rate limit allows and binding pauses, unless the pod was released (and
// the write cancelled) in the meantime.
func (w *statusWriter) process(ctx context.Context, uid types.UID) {
	w.mu.Lock()
	_, ok := w.pending[uid]
	w.mu.Unlock()
	if !ok || !w.waitForLeadership(ctx) || w.limiter.Wait(ctx) != nil {
		return
	}
	w.yieldToBinds(ctx)
	w.mu.Lock()
	item, ok := w.pending[uid]
	delete(w.pending, uid)
	if ok {
		w.writing[uid] = &item
	}
	w.mu.Unlock()
	if ok {
		w.write(ctx, &item)
		w.mu.Lock()
		if w.writing[uid] == &item {
			delete(w.writing, uid)
		}
		w.mu.Unlock()
	}
}

// wanted reports whether item is still to be written: its pod was not
// released (or reported anew) since the writer took it.
func (w *statusWriter) wanted(item *statusItem) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writing[item.pod.UID] == item
}

func (w *statusWriter) write(ctx context.Context, item *statusItem) {
	logger := klog.FromContext(ctx)
	pod, err := w.current(ctx, item.pod.Namespace, item.pod.Name)
	if err != nil || pod.UID != item.pod.UID || pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil {
		// Gone, replaced, bound or being deleted: nothing to say any more.
		metricStatusWrites.WithLabelValues("gone").Inc()
		return
	}
	if !w.wanted(item) {
		// Released while the write waited.
		return
	}
	said := false
	switch {
	case !item.gated || !hasCondition(pod, item.message):
	case !item.again:
		// Said already: by this replica before a restart, or by the
		// previous leader before a failover. Its event, if it has one,
		// is looked for in the API server (eventSaid).
		said = true
	default:
		// The informer's copy may still hold the condition as reported
		// before the release: ask the API server.
		pod, err = w.latest(ctx, item)
		switch {
		case apierrors.IsNotFound(err):
			metricStatusWrites.WithLabelValues("gone").Inc()
			return
		case err != nil:
			metricStatusWrites.WithLabelValues("error").Inc()
			logger.Error(err, "Reading a parked pod to write its PodScheduled condition again", "pod", klog.KObj(item.pod))
			w.unreport(item)
			return
		}
		if !w.wanted(item) {
			return // released while the pod was read
		}
		said = hasCondition(pod, item.message)
	}
	if item.gated && !said {
		err = w.patchCondition(ctx, pod, item.message)
		if apierrors.IsConflict(err) {
			// The pod changed since the copy we judged (bound, perhaps):
			// look at the latest version once.
			if pod, err = w.latest(ctx, item); err == nil {
				if !w.wanted(item) {
					return // released while the pod was read
				}
				if !hasCondition(pod, item.message) { // else said already
					err = w.patchCondition(ctx, pod, item.message)
				}
			}
		}
		switch {
		case err == nil:
			metricStatusWrites.WithLabelValues("ok").Inc()
		case apierrors.IsNotFound(err):
			metricStatusWrites.WithLabelValues("gone").Inc()
			return
		default:
			metricStatusWrites.WithLabelValues("error").Inc()
			logger.Error(err, "Writing PodScheduled condition of a parked pod", "pod", klog.KObj(item.pod))
			w.unreport(item)
			return
		}
	}
	if item.event && w.eventDue(item) {
		w.writeEvent(ctx, pod, item)
	}
}

// writeEvent writes the pod's own event of item, recorded as written
// (eventDue), unless the API server holds it already or the pod was
// released or forgotten meanwhile.
func (w *statusWriter) writeEvent(ctx context.Context, pod *v1.Pod, item *statusItem) {
	logger := klog.FromContext(ctx)
	note := eventNote(item.message)
	// This replica wrote none; another (the leader before a failover,
	// this one before a restart) may have, if the pod is older than this
	// replica's leadership.
	w.mu.Lock()
	since := w.leadSince
	w.mu.Unlock()
	var said bool
	var err error
	if since.IsZero() || !pod.CreationTimestamp.After(since.Add(eventCheckSkew)) {
		said, err = w.eventSaid(ctx, pod, note)
	}
	if apierrors.IsForbidden(err) {
		// No list on events (the RBAC of deploy/scheduler-*): the event is
		// written; after a failover or restart it may be there twice.
		w.eventsForbidden.Do(func() {
			logger.Error(err, "Cannot list events to write each parked pod's event once across restarts and failovers; writing it anyway. Grant list on events (deploy/scheduler-secondary/rbac.yaml)")
		})
		said, err = false, nil
	}
	if err != nil {
		logger.Error(err, "Looking for the event of a parked pod", "pod", klog.KObj(item.pod))
	}
	if said {
		return
	}
	// Released or forgotten while the API server was asked: no event
	// (and, if the list failed, the event is owed still).
	w.mu.Lock()
	write := err == nil && w.writing[item.pod.UID] == item
	if !write && w.evented[item.pod.UID] == item.message {
		delete(w.evented, item.pod.UID)
	}
	w.mu.Unlock()
	if write {
		w.recorder.Eventf(pod, nil, v1.EventTypeWarning, EventReason, "Scheduling", "%s", note)
	}
}

// eventNote is the note of a pod's event with message: at most the
// API's 1,024 bytes (validation.NoteLengthLimit), as kube-scheduler
// truncates its own.
func eventNote(message string) string { return truncate(message, maxNoteLength) }

// eventSaid reports whether the API server holds the pod's event with
// note, written by any replica.
//
// It reads the namespace's Hopeless events once per eventIndexTTL, not once
// per pod: events have no watch cache by default, so each list reads the
// namespace's events from etcd, and after a restart thousands of pods may
// be looked for. An event written since by another replica is missed; only
// the previous leader (dead) or this replica before a restart wrote the
// ones looked for, and this replica's own are in evented.
func (w *statusWriter) eventSaid(ctx context.Context, pod *v1.Pod, note string) (bool, error) {
	w.eventsMu.Lock()
	defer w.eventsMu.Unlock()
	now := w.clock.Now()
	idx := w.eventIndex[pod.Namespace]
	if idx == nil || now.Sub(idx.at) >= eventIndexTTL {
		list, err := w.client.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{ResourceVersion: "0",
			FieldSelector: fields.Set{"reason": EventReason}.String()})
		if err != nil {
			return false, err
		}
		idx = &eventIndex{at: now, said: map[podEvent]struct{}{}}
		for _, e := range list.Items {
			if e.Reason == EventReason {
				idx.said[podEvent{e.InvolvedObject.UID, e.Message}] = struct{}{}
			}
		}
		for ns, other := range w.eventIndex {
			if now.Sub(other.at) >= eventIndexTTL {
				delete(w.eventIndex, ns)
			}
		}
		w.eventIndex[pod.Namespace] = idx
	}
	_, said := idx.said[podEvent{pod.UID, note}]
	return said, nil
}

// eventIndex is the Hopeless events of one namespace, as listed at.
type eventIndex struct {
	at   time.Time
	said map[podEvent]struct{}
}

// podEvent is one pod's event: its pod and note.
type podEvent struct {
	uid  types.UID
	note string
}

// eventDue reports whether item's pod event is still to be written (the
// item is still wanted and no event of its message was written), and
// records it as written.
func (w *statusWriter) eventDue(item *statusItem) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	uid := item.pod.UID
	if w.writing[uid] != item || w.evented[uid] == item.message {
		return false
	}
	w.evented[uid] = item.message
	return true
}

// latest reads item's pod from the API server; a pod replaced, bound or
// being deleted since is NotFound: nothing to say to it any more.
func (w *statusWriter) latest(ctx context.Context, item *statusItem) (*v1.Pod, error) {
	pod, err := w.client.CoreV1().Pods(item.pod.Namespace).Get(ctx, item.pod.Name, metav1.GetOptions{})
	if err == nil && (pod.UID != item.pod.UID || pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil) {
		return nil, apierrors.NewNotFound(v1.Resource("pods"), item.pod.Name)
	}
	return pod, err
}

// unreport has a later PreEnqueue report item's message again, after its
// write failed: the pod is marked released, so that the next report (the
// queue's five-minute flush) writes the condition unless the API server
// holds it (a write that failed may have been applied: a timeout after the
// commit) and the event if it is still owed.
func (w *statusWriter) unreport(item *statusItem) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reported[item.pod.UID] != item.message {
		return
	}
	w.released[item.pod.UID] = struct{}{}
}

// patchCondition sets PodScheduled=False with message on pod, on condition
// that the pod is still the version read (so never on a pod bound since).
func (w *statusWriter) patchCondition(ctx context.Context, pod *v1.Pod, message string) error {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": pod.ResourceVersion, "uid": pod.UID},
		"status": map[string]any{
			"conditions": []v1.PodCondition{{
				Type:               v1.PodScheduled,
				Status:             v1.ConditionFalse,
				Reason:             v1.PodReasonUnschedulable,
				Message:            message,
				LastTransitionTime: metav1.NewTime(w.clock.Now()),
			}},
		},
	})
	if err != nil {
		return err
	}
	_, err = w.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	return err
}

func hasCondition(pod *v1.Pod, message string) bool {
	return slices.ContainsFunc(pod.Status.Conditions, func(c v1.PodCondition) bool {
		return c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && c.Message == message
	})
}
