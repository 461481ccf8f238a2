// Package hopeless implements the HopelessPods scheduler plugin: it parks pods
// that no existing node and no node the autoscaler could add can ever host,
// before any node is evaluated, and brings them back only when a node or node
// group appears that passes all their static predicates.
package hopeless

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/features"
	"k8s.io/kubernetes/pkg/scheduler/util"

	"github.com/ballast-k8s/ballast/config/v1alpha1"
	"github.com/ballast-k8s/ballast/internal/shapes"
)

var (
	_ fwk.PreEnqueuePlugin  = &HopelessPods{}
	_ fwk.PreFilterPlugin   = &HopelessPods{}
	_ fwk.EnqueueExtensions = &HopelessPods{}
	_ fwk.SignPlugin        = &HopelessPods{}
)

const (
	// Name is the plugin's name in the registry and in configuration.
	Name = "HopelessPods"
	// EventReason is the reason of the one event written per parked pod.
	EventReason = "Hopeless"
	// admitTTL bounds how long a hint's "let it through" stays valid.
	admitTTL = time.Minute
)

// HopelessPods is the plugin.
type HopelessPods struct {
	handle fwk.Handle
	args   *v1alpha1.HopelessPodsArgs
	store  *shapes.Store
	view   *view
	status *statusWriter

	cache     *verdictCache
	nodeHints nodeHintMemo
	// admit holds the pods a QueueingHint let back in, with the time: the
	// scheduler's queue may act on a node event before our view has seen it.
	admit sync.Map // types.UID -> time.Time

	parkedMu sync.Mutex
	parked   map[types.UID]parkedPod
	byClaim  map[string]sets.Set[types.UID]
}

type parkedPod struct {
	key    string
	reason shapes.Reason
	claims []string // namespace/name of the pod's claims, for the claim index
}

// Name returns the plugin's name.
func (pl *HopelessPods) Name() string { return Name }

// SignPod returns the fragments of the fields the static predicates read, so
// that upstream batching stays on. The requests fragment comes from
// NodeResourcesFit, under the same key, and is not repeated here.
func (pl *HopelessPods) SignPod(_ context.Context, pod *v1.Pod) ([]fwk.SignFragment, *fwk.Status) {
	aff, err := fwk.NodeAffinitySigner(pod)
	if err != nil {
		return nil, fwk.AsStatus(err)
	}
	return []fwk.SignFragment{
		{Key: fwk.NodeSelectorSignerName, Value: pod.Spec.NodeSelector},
		{Key: fwk.NodeAffinitySignerName, Value: aff},
		{Key: fwk.TolerationsSignerName, Value: fwk.TolerationsSigner(pod)},
		{Key: fwk.VolumesSignerName, Value: fwk.VolumesSigner(pod)},
	}, nil
}

// EventsToRegister lists the events that can make a parked pod schedulable.
// Node deletions and pod events of other pods never can: static predicates
// do not read other pods.
func (pl *HopelessPods) EventsToRegister(_ context.Context) ([]fwk.ClusterEventWithHint, error) {
	return append([]fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.UpdateNodeLabel | fwk.UpdateNodeTaint | fwk.UpdateNodeAllocatable}, QueueingHintFn: pl.isSchedulableAfterNodeChange},
		{Event: fwk.ClusterEvent{Resource: fwk.TargetPod, ActionType: fwk.UpdatePodToleration}, QueueingHintFn: pl.isSchedulableAfterPodTolerationChange},
		// DeviceClass and ResourceSlice events: see draEvents in dra.go (appended below).
		// Claims and volumes are not registered: every registered event makes
		// the queue visit every parked pod, and a cluster creates PVs and
		// claims by the thousand. The view indexes parked pods by claim and
		// activates just the pods of a claim or volume that changed, as it
		// does for node-group templates, which are no framework event at all.
	}, pl.draEvents()...), nil
}

// isSchedulableAfterNodeChange queues the pod only when the node passes all
// of the pod's static predicates and did not before. The queue asks once per
// parked pod for the same event; the answer is computed once per signature.
func (pl *HopelessPods) isSchedulableAfterNodeChange(logger klog.Logger, pod *v1.Pod, oldObj, newObj interface{}) (fwk.QueueingHint, error) {
	oldNode, newNode, err := util.As[*v1.Node](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	req, sig := pl.view.requirementsAndSignature(pod)
	hint := pl.nodeHints.get(oldNode, newNode, sig, func() fwk.QueueingHint {
		if !shapes.Fits(req, newNode) || (oldNode != nil && shapes.Fits(req, oldNode)) {
			return fwk.QueueSkip
		}
		return fwk.Queue
	})
	if hint == fwk.Queue {
		logger.V(4).Info("Node can host a parked pod", "pod", klog.KObj(pod), "node", klog.KObj(newNode))
		pl.admit.Store(pod.UID, time.Now())
	}
	return hint, nil
}

// nodeHintMemo holds the node hint per pod signature for the node event the
// queue is handing to every parked pod in turn. An event is the pair of
// objects the informer delivered; the memo keeps them referenced, so a
// later event cannot reuse their addresses.
type nodeHintMemo struct {
	mu               sync.Mutex
	oldNode, newNode *v1.Node
	bySig            map[uint64]fwk.QueueingHint
}

func (m *nodeHintMemo) get(oldNode, newNode *v1.Node, sig uint64, compute func() fwk.QueueingHint) fwk.QueueingHint {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bySig == nil || m.oldNode != oldNode || m.newNode != newNode {
		m.oldNode, m.newNode, m.bySig = oldNode, newNode, map[uint64]fwk.QueueingHint{}
	}
	h, ok := m.bySig[sig]
	if !ok {
		h = compute()
		m.bySig[sig] = h
	}
	return h
}

// isSchedulableAfterPodTolerationChange queues the pod when its new
// tolerations make it fit somewhere.
func (pl *HopelessPods) isSchedulableAfterPodTolerationChange(_ klog.Logger, pod *v1.Pod, oldObj, newObj interface{}) (fwk.QueueingHint, error) {
	_, newPod, err := util.As[*v1.Pod](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if newPod.UID != pod.UID {
		return fwk.QueueSkip, nil
	}
	if v, ok := pl.verdict(newPod); ok && v.Hopeless {
		return fwk.QueueSkip, nil
	}
	return fwk.Queue, nil
}

// PreEnqueue keeps a hopeless pod out of the active queue: it gets no
// scheduling attempt at all until a hint or the view lets it back in. The
// scheduler writes no condition for such a pod, so the plugin does, once.
func (pl *HopelessPods) PreEnqueue(ctx context.Context, pod *v1.Pod) *fwk.Status {
	if !*pl.args.GateAtPreEnqueue {
		return nil
	}
	if pl.admitted(pod.UID, false) {
		pl.unpark(pod.UID)
		return nil
	}
	v, ok := pl.verdict(pod)
	if !ok || !v.Hopeless {
		pl.unpark(pod.UID)
		return nil
	}
	pl.park(pod, v, true)
	return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, v.Message)
}

// PreFilter rejects a hopeless pod before any Filter runs, and narrows Filter
// to the nodes whose shape passes the pod's static predicates.
func (pl *HopelessPods) PreFilter(_ context.Context, _ fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	if pl.admitted(pod.UID, true) {
		pl.unpark(pod.UID)
		return nil, nil
	}
	v, ok := pl.verdict(pod)
	if !ok {
		return nil, nil
	}
	if v.Hopeless {
		pl.park(pod, v, false)
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, v.Message)
	}
	pl.unpark(pod.UID)
	if *pl.args.NarrowFilter && v.Nodes != nil {
		return &fwk.PreFilterResult{NodeNames: v.Nodes}, nil
	}
	return nil, nil
}

// PreFilterExtensions returns nil: the plugin keeps no per-cycle state.
func (pl *HopelessPods) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// admitted reports whether a hint recently let the pod through; consume
// removes the mark (PreFilter is the last place it is needed).
func (pl *HopelessPods) admitted(uid types.UID, consume bool) bool {
	t, ok := pl.admit.Load(uid)
	if !ok {
		return false
	}
	if consume || time.Since(t.(time.Time)) > admitTTL {
		pl.admit.Delete(uid)
	}
	return time.Since(t.(time.Time)) <= admitTTL
}

// verdict returns the pod's verdict; ok is false while the view is not
// synced, in which case the plugin parks nothing.
func (pl *HopelessPods) verdict(pod *v1.Pod) (shapes.Verdict, bool) {
	if !pl.view.synced() {
		return shapes.Verdict{}, false
	}
	req, sig := pl.view.requirementsAndSignature(pod)
	v := pl.cache.get(pl.store, req, sig)
	if v.FailOpen {
		return v, false
	}
	return v, true
}

func (pl *HopelessPods) park(pod *v1.Pod, v shapes.Verdict, gated bool) {
	pl.parkedMu.Lock()
	old, had := pl.parked[pod.UID]
	if had {
		// A pod's volumes cannot change: key and claim index stay as they are.
		p := old
		p.reason = v.Reason
		pl.parked[pod.UID] = p
	} else {
		p := parkedPod{key: pod.Namespace + "/" + pod.Name, reason: v.Reason, claims: claimKeys(pod)}
		pl.parked[pod.UID] = p
		for _, c := range p.claims {
			if pl.byClaim[c] == nil {
				pl.byClaim[c] = sets.New[types.UID]()
			}
			pl.byClaim[c].Insert(pod.UID)
		}
	}
	pl.parkedMu.Unlock()
	if !had || old.reason != v.Reason {
		metricParked.WithLabelValues(string(v.Reason)).Inc()
		if had {
			metricParked.WithLabelValues(string(old.reason)).Dec()
		}
	}
	pl.status.report(pod, v.Message, gated)
}

func (pl *HopelessPods) unpark(uid types.UID) {
	pl.parkedMu.Lock()
	old, had := pl.parked[uid]
	delete(pl.parked, uid)
	for _, c := range old.claims {
		if set := pl.byClaim[c]; set != nil {
			set.Delete(uid)
			if set.Len() == 0 {
				delete(pl.byClaim, c)
			}
		}
	}
	pl.parkedMu.Unlock()
	if had {
		metricParked.WithLabelValues(string(old.reason)).Dec()
	}
}

// parkedKeysOfClaim returns the namespace/name of the parked pods that use
// the claim namespace/name.
func (pl *HopelessPods) parkedKeysOfClaim(claim string) []string {
	pl.parkedMu.Lock()
	defer pl.parkedMu.Unlock()
	var keys []string
	for uid := range pl.byClaim[claim] {
		keys = append(keys, pl.parked[uid].key)
	}
	return keys
}

// parkedKeys returns the namespace/name of every parked pod.
func (pl *HopelessPods) parkedKeys() []string {
	pl.parkedMu.Lock()
	defer pl.parkedMu.Unlock()
	keys := make([]string, 0, len(pl.parked))
	for _, p := range pl.parked {
		keys = append(keys, p.key)
	}
	return keys
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

// New builds the plugin from its args.
func New(ctx context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
	args, err := v1alpha1.DecodeHopelessPodsArgs(obj)
	if err != nil {
		return nil, err
	}
	registerMetrics()
	fg := utilfeature.DefaultFeatureGate
	opts := shapes.FeatureOptions(fg)
	opts.IdentityLabels = sets.New(args.IdentityLabels...)
	pl := &HopelessPods{
		handle:  h,
		args:    args,
		store:   shapes.NewStore(opts, *args.Autoscaling),
		cache:   newVerdictCache(),
		parked:  map[types.UID]parkedPod{},
		byClaim: map[string]sets.Set[types.UID]{},
	}
	pl.status = newStatusWriter(h.ClientSet(), h.EventRecorder(), float64(*args.StatusWritesPerSecond))
	pl.view, err = newView(ctx, pl, h)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	// DRA wiring (dra.go): DeviceClasses decide extended resources.
	if fg.Enabled(features.DynamicResourceAllocation) {
		synced, err := pl.watchDeviceClasses(h)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		pl.view.hasSynced = append(pl.view.hasSynced, synced)
	}
	go pl.status.run(ctx)
	return pl, nil
}
