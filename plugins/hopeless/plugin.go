// Package hopeless implements the HopelessPods scheduler plugin: it parks pods
// that no existing node and no node the autoscaler could add can ever host,
// before any node is evaluated, and brings them back only when a node or node
// group appears that passes all their static predicates.
//
// Each job has its type and file: the extension points (admission.go) and
// queueing hints (hints.go) judge pods with the verdict cache (verdicts.go)
// and park them in the parking lot (parking.go); the release path
// (release.go) brings them back; the informer wiring (informers.go) feeds
// the release path and the node-group template state (templates.go); the
// status writer (status.go, owners.go, leader.go) tells users why.
package hopeless

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/metadata"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/features"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
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

// HopelessPods is the plugin: what the extension points and hints need,
// nothing of the API. New wires the rest (components).
type HopelessPods struct {
	gateAtPreEnqueue bool
	narrowFilter     bool
	verdicts         *verdictCache
	parking          *parker
	// recheck asks the release path to judge every parked verdict again;
	// recheckClaims, the parked pods of some claims (nil: never).
	recheck       func()
	recheckClaims func(claims []string)
}

// Name returns the plugin's name.
func (pl *HopelessPods) Name() string { return Name }

// New builds the plugin from its args, for a binary that does not say how
// it elects its leader (see NewFactory).
func New(ctx context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
	return newPlugin(ctx, obj, h, nil, nil)
}

// NewFactory returns the plugin's factory for a binary that knows its leader
// election and its scheduler configuration. The factory reads *election and
// *sched when the scheduler builds its profiles, i.e. after the binary
// parsed its flags and config, so the binary may fill them in until then.
func NewFactory(election *LeaderElection, sched *SchedulerConfig) frameworkruntime.PluginFactory {
	return func(ctx context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
		return newPlugin(ctx, obj, h, election, sched)
	}
}

func newPlugin(ctx context.Context, obj runtime.Object, h fwk.Handle, election *LeaderElection, sched *SchedulerConfig) (fwk.Plugin, error) {
	args, err := v1alpha1.DecodeHopelessPodsArgs(obj)
	if err != nil {
		return nil, err
	}
	c, err := build(ctx, args, h, election, sched, clock.RealClock{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	c.start(ctx)
	return c.plugin, nil
}

// components are the plugin's jobs, wired together. Only the plugin is
// handed to the framework; tests reach the others here.
type components struct {
	plugin    *HopelessPods
	store     *shapes.Store
	informers *informerWiring
	templates *templateConfig // nil: the cluster does not autoscale
	release   *releaser
	status    *statusWriter
}

// build wires the plugin's jobs for args on the framework handle h, with
// clk as their clock, for the profile of h in sched (nil: the default
// profile). Nothing runs until start.
func build(ctx context.Context, args *v1alpha1.HopelessPodsArgs, h fwk.Handle, election *LeaderElection, sched *SchedulerConfig, clk clock.WithTicker) (*components, error) {
	registerMetrics()
	logger := klog.FromContext(ctx)
	fg := utilfeature.DefaultFeatureGate
	opts := shapes.FeatureOptions(fg)
	opts.IdentityLabels = sets.New(args.IdentityLabels...)
	applyProfile(logger, opts, sched, h)
	factory := h.SharedInformerFactory()
	core := factory.Core().V1()
	podLister, pvcLister, pvLister := core.Pods().Lister(), core.PersistentVolumeClaims().Lister(), core.PersistentVolumes().Lister()
	volumes := shapes.VolumeLookup{
		Claim: func(namespace, name string) (*v1.PersistentVolumeClaim, bool) {
			pvc, err := pvcLister.PersistentVolumeClaims(namespace).Get(name)
			return pvc, err == nil
		},
		PV: func(name string) (*v1.PersistentVolume, bool) {
			pv, err := pvLister.Get(name)
			return pv, err == nil
		},
	}

	c := &components{store: shapes.NewStore(opts, *args.Autoscaling), informers: &informerWiring{}}
	c.status = newStatusWriter(h.ClientSet(), h.EventRecorder(), float64(*args.StatusWritesPerSecond), clk)
	var meta metadata.Interface // Jobs, metadata only, for the owner report
	if cfg := h.KubeConfig(); cfg != nil {
		m, err := metadata.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("a metadata client for Jobs: %w", err)
		}
		meta = m
	}
	c.status.owners = newOwnerReport(h.ClientSet(), meta, factory, clk) // owners.go: one event per owner
	if p, ok := h.(interface{ ProfileName() string }); ok && p.ProfileName() != "" {
		c.status.owners.setProfile(p.ProfileName())
	}
	c.status.current = func(_ context.Context, namespace, name string) (*v1.Pod, error) {
		// The informer's copy will do: the patch carries its resourceVersion.
		return podLister.Pods(namespace).Get(name)
	}
	c.status.leading = newLeaderCheck(legacyregistry.DefaultGatherer, election, clk).leading
	// A pod is pending while the informer holds it, with its UID, unbound
	// and not being deleted: the queue and a cycle may judge a copy of a
	// pod deleted or bound since, after the plugin forgot it (parker.live).
	live := func(pod *v1.Pod) bool {
		cur, err := podLister.Pods(pod.Namespace).Get(pod.Name)
		return err == nil && cur.UID == pod.UID && cur.Spec.NodeName == "" && cur.DeletionTimestamp == nil
	}
	parking := &parker{lot: newParkingLot(), reporter: c.status, live: live}
	verdicts := newVerdictCache(c.store, volumes, c.informers.synced, clk)
	verdicts.live = live
	c.release = newReleaser(c.store, verdicts, parking, h, podLister, c.informers.synced, logger)
	c.plugin = &HopelessPods{
		gateAtPreEnqueue: *args.GateAtPreEnqueue,
		narrowFilter:     *args.NarrowFilter,
		verdicts:         verdicts,
		parking:          parking,
		recheck:          c.release.requestRecheck,
		recheckClaims:    c.release.recheckClaims,
	}
	if *args.Autoscaling {
		c.templates = &templateConfig{store: c.store, recorder: h.EventRecorder(), clock: clk,
			maxAge: args.MaxTemplateAge.Duration, logger: logger, changed: c.release.requestRecheck}
	}
	err := c.informers.wire(ctx, factory, h.ClientSet(), fg.Enabled(features.DynamicResourceAllocation), *args.NodeGroupsConfigMap, informerHandlers{
		release:   c.release,
		podBound:  c.status.noteBind,
		podGone:   func(uid types.UID) { verdicts.forget(uid); parking.forget(uid) },
		templates: c.templates,
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// start runs the plugin's loops until ctx ends.
func (c *components) start(ctx context.Context) {
	if c.templates != nil {
		go c.templates.watchStaleness(ctx)
	}
	go c.status.run(ctx)
	go c.release.run(ctx)
}
