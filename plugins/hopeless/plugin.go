// Package hopeless implements the HopelessPods scheduler plugin: it parks pods
// that no existing node and no node the autoscaler could add can ever host,
// before any node is evaluated, and brings them back only when a node or node
// group appears that passes all their static predicates.
package hopeless

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/features"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	"k8s.io/kubernetes/pkg/scheduler/util"
	"k8s.io/utils/clock"

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
)

// HopelessPods is the plugin.
type HopelessPods struct {
	handle fwk.Handle
	args   *v1alpha1.HopelessPodsArgs
	clock  clock.Clock
	store  *shapes.Store
	view   *view
	status *statusWriter
	lot    *parkingLot

	cache *verdictCache
	// recheck asks the re-check loop to judge every parked signature again
	// (the store changed); it holds at most one request.
	recheck chan struct{}
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

// EventsToRegister lists the events that can make a parked pod schedulable
// and that only the queue sees. Node deletions and pod events of other pods
// never can: static predicates do not read other pods.
//
// Node events are not registered: every registered event makes the queue
// hand it to each parked pod in turn under its lock (4,000 hint calls for
// each node of a churning pool), although one verdict answers for all the
// pods of a signature. The plugin's own node handler (view.upsertNode) feeds
// the store and has the re-check loop activate the signatures that now fit,
// after the store has the node: release does not depend on the order in
// which the informer hands the node to the queue and to the plugin.
func (pl *HopelessPods) EventsToRegister(_ context.Context) ([]fwk.ClusterEventWithHint, error) {
	return append([]fwk.ClusterEventWithHint{
		// Every update of the pod itself that changes what the static
		// predicates read: tolerations added, requests resized down through
		// pods/resize (allowed for pending pods), gates lifted. A resize up
		// cannot release, but can change the reason the user reads.
		{Event: fwk.ClusterEvent{Resource: fwk.TargetPod, ActionType: fwk.UpdatePodToleration | fwk.UpdatePodScaleDown | fwk.UpdatePodScaleUp | fwk.UpdatePodSchedulingGatesEliminated | fwk.UpdatePodGeneratedResourceClaim}, QueueingHintFn: pl.isSchedulableAfterPodChange},
		// DeviceClass and ResourceSlice events: see draEvents in dra.go (appended below).
		// Claims and volumes are not registered either: a cluster creates PVs
		// and claims by the thousand. The view indexes parked pods by claim and
		// activates just the pods of a claim or volume that changed, as it
		// does for node-group templates, which are no framework event at all.
	}, pl.draEvents()...), nil
}

// isSchedulableAfterPodChange queues the pod when its update makes it fit
// somewhere; when it does not, the parked pod is judged again so that its
// condition says the current reason.
func (pl *HopelessPods) isSchedulableAfterPodChange(_ klog.Logger, pod *v1.Pod, oldObj, newObj interface{}) (fwk.QueueingHint, error) {
	_, newPod, err := util.As[*v1.Pod](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if newPod.UID != pod.UID {
		return fwk.QueueSkip, nil
	}
	judged := pl.storeGenerations()
	v, sig, ok := pl.judge(newPod)
	if !ok || !v.Hopeless {
		return fwk.Queue, nil
	}
	if _, parked := pl.lot.get(newPod.UID); parked {
		// A new reason gets the condition too, whoever wrote the old one.
		pl.parkJudged(newPod, sig, v, true, judged)
	}
	return fwk.QueueSkip, nil
}

// PreEnqueue keeps a hopeless pod out of the active queue: it gets no
// scheduling attempt at all until a hint or the view lets it back in. The
// scheduler writes no condition for such a pod, so the plugin does, once.
func (pl *HopelessPods) PreEnqueue(ctx context.Context, pod *v1.Pod) *fwk.Status {
	if !*pl.args.GateAtPreEnqueue {
		return nil
	}
	judged := pl.storeGenerations()
	v, sig, ok := pl.judge(pod)
	if !ok || !v.Hopeless {
		pl.unpark(pod.UID)
		return nil
	}
	pl.parkJudged(pod, sig, v, true, judged)
	return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, v.Message)
}

// PreFilter rejects a hopeless pod before any Filter runs. With narrowFilter
// it also restricts Filter to the nodes whose shape passes the pod's static
// predicates; that is off by default, because the nodes left out are then
// reported as "didn't satisfy plugin(s) [HopelessPods]" instead of their
// real reasons, and those are what a user debugging a pending pod needs.
func (pl *HopelessPods) PreFilter(_ context.Context, _ fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	judged := pl.storeGenerations()
	v, sig, ok := pl.judge(pod)
	if !ok {
		return nil, nil
	}
	if v.Hopeless {
		pl.parkJudged(pod, sig, v, false, judged)
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

// verdict returns the pod's verdict; ok is false while the view is not
// synced, in which case the plugin parks nothing.
func (pl *HopelessPods) verdict(pod *v1.Pod) (shapes.Verdict, bool) {
	v, _, ok := pl.judge(pod)
	return v, ok
}

// judge returns the pod's verdict and the signature it is cached under.
func (pl *HopelessPods) judge(pod *v1.Pod) (shapes.Verdict, uint64, bool) {
	if !pl.view.synced() {
		return shapes.Verdict{}, 0, false
	}
	req, sig := pl.view.requirementsAndSignature(pod)
	v := pl.cache.get(pl.store, req, sig)
	if v.FailOpen {
		return v, sig, false
	}
	return v, sig, true
}

// park records the pod as parked and tells the user why (again, if the
// reason changed).
func (pl *HopelessPods) park(pod *v1.Pod, sig uint64, v shapes.Verdict, gated bool) {
	old, had := pl.lot.park(pod, sig, v)
	if !had || old.reason != v.Reason {
		metricParked.WithLabelValues(string(v.Reason)).Inc()
		if had {
			metricParked.WithLabelValues(string(old.reason)).Dec()
		}
	}
	pl.status.report(pod, v.Message, gated)
}

// storeGenerations is the store's state, to compare before and after a judge.
type storeGenerations struct{ gen, memberGen uint64 }

func (pl *HopelessPods) storeGenerations() storeGenerations {
	gen, memberGen := pl.store.Generations()
	return storeGenerations{gen, memberGen}
}

// parkJudged parks a pod judged against the store at generations judged.
// If the store moved on meanwhile, the node handler's re-check may have run
// before the pod was in the lot and missed it: ask for another.
func (pl *HopelessPods) parkJudged(pod *v1.Pod, sig uint64, v shapes.Verdict, gated bool, judged storeGenerations) {
	pl.park(pod, sig, v, gated)
	if pl.storeGenerations() != judged {
		pl.requestRecheck()
	}
}

// unpark forgets a pod that is no longer parked, and drops the write still
// queued for it: a released pod may be bound any moment.
func (pl *HopelessPods) unpark(uid types.UID) {
	old, had := pl.lot.unpark(uid)
	if had {
		metricParked.WithLabelValues(string(old.reason)).Dec()
		pl.status.cancel(uid)
	}
}

// requestRecheck asks for every parked signature to be judged again.
func (pl *HopelessPods) requestRecheck() {
	select {
	case pl.recheck <- struct{}{}:
	default:
	}
}

// runRechecks judges the parked signatures again whenever the store changed
// in a way that can matter to them. Release does not depend on the order in
// which the informer hands a node to the queue and to the plugin's store:
// the hints are a fast path, this is the path that always runs.
func (pl *HopelessPods) runRechecks(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-pl.recheck:
			pl.recheckParked(klog.FromContext(ctx))
		}
	}
}

// recheckParked releases the parked pods of every signature that is no
// longer hopeless, and re-reports those whose reason changed. It judges
// once per signature.
func (pl *HopelessPods) recheckParked(logger klog.Logger) {
	if !pl.view.synced() {
		return
	}
	release := map[string]*v1.Pod{}
	for _, rep := range pl.lot.signatures() {
		v, sig, ok := pl.judge(rep.pod)
		if ok && v.Hopeless && v.Message == rep.message {
			continue
		}
		for _, p := range pl.lot.withSignature(rep.sig) {
			if !ok || !v.Hopeless {
				release[p.key()] = p.pod
				pl.unpark(p.pod.UID)
				continue
			}
			// A new reason gets the condition too, whoever wrote the old one.
			pl.park(p.pod, sig, v, true)
		}
	}
	if len(release) > 0 {
		logger.V(2).Info("Releasing parked pods that may have become schedulable", "count", len(release))
		pl.handle.Activate(logger, release)
	}
}

// New builds the plugin from its args, for a binary that does not say how
// it elects its leader (see NewFactory).
func New(ctx context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
	return newPlugin(ctx, obj, h, nil)
}

// NewFactory returns the plugin's factory for a binary that knows its leader
// election. The factory reads *election when the scheduler builds its
// profiles, i.e. after the binary parsed its flags and config, so the
// binary may fill it in until then.
func NewFactory(election *LeaderElection) frameworkruntime.PluginFactory {
	return func(ctx context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
		return newPlugin(ctx, obj, h, election)
	}
}

func newPlugin(ctx context.Context, obj runtime.Object, h fwk.Handle, election *LeaderElection) (fwk.Plugin, error) {
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
		clock:   clock.RealClock{},
		store:   shapes.NewStore(opts, *args.Autoscaling),
		cache:   newVerdictCache(),
		lot:     newParkingLot(),
		recheck: make(chan struct{}, 1),
	}
	pl.status = newStatusWriter(h.ClientSet(), h.EventRecorder(), float64(*args.StatusWritesPerSecond))
	pl.status.owners = newOwnerReport(h.ClientSet(), h.SharedInformerFactory(), clock.RealClock{}) // owners.go: one event per owner
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
	pl.status.current = pl.view.currentPod
	pl.status.leading = newLeaderCheck(legacyregistry.DefaultGatherer, election).leading
	go pl.status.run(ctx)
	go pl.runRechecks(ctx)
	return pl, nil
}
