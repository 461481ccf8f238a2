// Package balancer is az-balancer's reconcile loop: it keeps multi-zone Auto
// Scaling groups from rebalancing, protects the nodes of bound local
// PersistentVolumes from every kind of scale-in, and publishes the node-group
// templates the scheduler plugin reads. `Plan` runs the same loop against a
// recording sandbox.
package balancer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/split"
)

const (
	// Source is what the balancer writes as the ConfigMap's source and as the
	// value of its ownership annotations.
	Source = "az-balancer"

	// AnnotationScaleDownDisabled keeps cluster-autoscaler from removing the node.
	AnnotationScaleDownDisabled = "cluster-autoscaler.kubernetes.io/scale-down-disabled"
	// AnnotationProtectedBy records that Ballast set AnnotationScaleDownDisabled,
	// so that it removes only what it set.
	AnnotationProtectedBy = "ballast.k8s.io/protected-by"
	// AnnotationScaleInProtectedBy records that Ballast set the instance's scale-in protection.
	AnnotationScaleInProtectedBy = "ballast.k8s.io/scale-in-protected-by"

	// HookName is the termination lifecycle hook the balancer puts on groups
	// that hold bound local volumes.
	HookName = "ballast-local-volumes"
)

// Cloud is what the balancer needs of AWS, splitting (split.Cloud)
// included; *asg.Client implements it.
type Cloud interface {
	split.Cloud
	// Region is the region the clients ask; an instance EC2 does not know
	// is taken for gone only in a zone of this region.
	Region() string
	DescribeGroups(ctx context.Context, sel asg.Selector) ([]asg.Group, error)
	DescribeInstances(ctx context.Context, ids []string) ([]asg.Instance, error)
	DescribeInstanceTypes(ctx context.Context, names []string) ([]asg.InstanceType, error)
	LaunchTemplateInstanceType(ctx context.Context, lt asg.LaunchTemplateRef) (string, error)
	DescribeLifecycleHooks(ctx context.Context, group string) ([]asg.Hook, error)
	DescribeAutoScalingInstances(ctx context.Context, ids []string) ([]asg.GroupMember, error)

	SuspendProcesses(ctx context.Context, group string, processes ...string) error
	SetInstanceProtection(ctx context.Context, group string, ids []string, protected bool) error
	PutLifecycleHook(ctx context.Context, h asg.Hook) error
	RecordLifecycleActionHeartbeat(ctx context.Context, group, hook, instance string) error
	CompleteLifecycleAction(ctx context.Context, group, hook, instance, result string) error
}

var _ Cloud = (*asg.Client)(nil)

// Options configure the loop.
type Options struct {
	Selector           asg.Selector
	ConfigMapNamespace string
	ConfigMapName      string
	// HeartbeatTimeout of the termination hook; the loop must run well within it.
	HeartbeatTimeout time.Duration
	// TemplateRefresh is the longest the ConfigMap goes without a new generatedAt.
	TemplateRefresh time.Duration
	// HookResync is how often an ensured hook is looked at again.
	HookResync time.Duration
	// MaxOrphanReleases caps the claims of orphaned volumes deleted in one
	// loop; 0 means DefaultMaxOrphanReleases, a negative value releases none.
	MaxOrphanReleases int
	// Enforce is the zone policy, EnforceSuspend (default) or EnforceSplit (split.go).
	Enforce string
	// HeartbeatInterval is how often held terminations are heartbeaten by
	// their own timer, whatever the loop is doing; 0 means a third of
	// HeartbeatTimeout.
	HeartbeatInterval time.Duration
	// Templates are cluster-autoscaler's template rules given by its flags (templates_eks.go).
	Templates TemplateOptions
}

// DefaultHeartbeatTimeout is the termination hook's heartbeat timeout when
// none is given (the --lifecycle-heartbeat-timeout default). AWS ends a
// held termination at the hook's global timeout, "172800 seconds (48 hours)
// or 100 times HeartbeatTimeout, whichever is smaller" (API_LifecycleHook,
// GlobalTimeout): 1728 s or more gets the full 48 hours. It costs nothing
// to the terminations the balancer lets go (it completes them in its next
// loop); a balancer that is down holds a termination this long.
const DefaultHeartbeatTimeout = 30 * time.Minute

// DefaultTemplateRefresh is the longest the node-group ConfigMap goes
// without a write when none is given (the --template-refresh default).
const DefaultTemplateRefresh = time.Minute

// DefaultHookResync is how often an ensured termination hook is looked at
// again when none is given.
const DefaultHookResync = 30 * time.Minute

// Balancer runs the loop.
type Balancer struct {
	kube     kubernetes.Interface
	cloud    Cloud
	recorder record.EventRecorder
	clock    clock.WithTicker
	opts     Options
	metrics  *metrics

	// mu is held by a loop; each step owns its part of the state below.
	mu        sync.Mutex
	templates templateState   // templates.go
	lifecycle lifecycleState  // protect.go: hooks and held terminations
	splits    splitState      // split.go
	warned    map[string]bool // events.go: warnings already emitted

	// Health is read without the loop's lock: a probe never waits for a loop.
	lastSuccess atomic.Int64 // unix nanoseconds of the last successful loop, 0 before
	leading     atomic.Int64 // unix nanoseconds since Run started, 0 when not running

	// held is what the heartbeat timer keeps alive between loops.
	held heldSet
}

// New builds a balancer. reg may be nil.
func New(kube kubernetes.Interface, cloud Cloud, recorder record.EventRecorder, clk clock.WithTicker, opts Options, reg prometheus.Registerer) *Balancer {
	if opts.HeartbeatTimeout == 0 {
		opts.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = opts.HeartbeatTimeout / 3
	}
	if opts.TemplateRefresh == 0 {
		opts.TemplateRefresh = DefaultTemplateRefresh
	}
	if opts.HookResync == 0 {
		opts.HookResync = DefaultHookResync
	}
	if opts.ConfigMapNamespace == "" {
		opts.ConfigMapNamespace = nodegroups.DefaultNamespace
	}
	if opts.ConfigMapName == "" {
		opts.ConfigMapName = nodegroups.DefaultName
	}
	return &Balancer{
		kube: kube, cloud: cloud, recorder: recorder, clock: clk, opts: opts, metrics: newMetrics(reg),
		templates: templateState{types: map[string]asg.InstanceType{}, launchTemplates: map[asg.LaunchTemplateRef]cached{}},
		lifecycle: lifecycleState{hooks: map[string]time.Time{}, completed: map[string]bool{}},
		splits:    splitState{pass: loopSplitPass},
		warned:    map[string]bool{},
	}
}

// Run reconciles every interval until ctx ends. Failures, throttling that
// outlasted the SDK's retries included, are logged and retried next time.
// Held terminations are heartbeaten by their own timer meanwhile, so that a
// slow loop (a split, throttling) never lets them time out.
func (b *Balancer) Run(ctx context.Context, interval time.Duration) {
	logger := klog.FromContext(ctx)
	b.leading.Store(b.clock.Now().UnixNano())
	defer b.leading.Store(0)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.heartbeatLoop(ctx) }()
	defer wg.Wait()
	defer cancel()
	t := b.clock.NewTicker(interval)
	defer t.Stop()
	for {
		if err := b.Reconcile(ctx); err != nil {
			logger.Error(err, "Reconcile failed; retrying at the next interval")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// Healthy reports an error when Run has gone maxAge without a successful
// loop, counted from its start when no loop has succeeded yet. A replica
// that is not running (a standby waiting for the lease) is healthy. It never
// waits for a running loop.
func (b *Balancer) Healthy(maxAge time.Duration) error {
	since := b.leading.Load()
	if since == 0 {
		return nil
	}
	now := b.clock.Now()
	last := b.lastSuccess.Load()
	if last < since {
		if age := now.Sub(time.Unix(0, since)); age > maxAge {
			return fmt.Errorf("no loop has completed in the %s since the balancer started", age.Round(time.Second))
		}
		return nil
	}
	if age := now.Sub(time.Unix(0, last)); age > maxAge {
		return fmt.Errorf("last successful reconcile %s ago", age.Round(time.Second))
	}
	return nil
}

// Reconcile runs the loop once: every step runs even when another failed, and
// the errors are joined. The steps, in order, and where they live:
//
//   - discovered (balancer.go): the managed groups, the others reported;
//   - lifecycleActions (protect.go): held terminations, heartbeaten or let go;
//   - zonePolicy (balancer.go, split.go): AZRebalance suspended, or a split pass;
//   - protect (protect.go): annotations and scale-in protection of held nodes;
//   - ensureHooks (protect.go): the termination hook on groups that hold volumes;
//   - orphans (orphans.go): placement records, orphaned nodes and volumes, releases;
//   - publish (templates.go): the node-group ConfigMap;
//   - emit (events.go): the loop's group-level events.
func (b *Balancer) Reconcile(ctx context.Context) (err error) {
	start := b.clock.Now()
	defer func() { b.metrics.observe(b.clock.Since(start), err) }()
	b.mu.Lock()
	defer b.mu.Unlock()

	groups, err := b.cloud.DescribeGroups(ctx, b.opts.Selector)
	if err != nil {
		// Held terminations are held still, and the held nodes annotated
		// (blindhold.go); nothing else runs.
		return b.holdWithoutGroups(ctx, err)
	}
	// ResourceVersion 0 serves the lists from the apiserver's watch cache.
	nodes, err := b.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	pvs, err := b.kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return fmt.Errorf("listing persistent volumes: %w", err)
	}
	// Without the CSI nodes, a volume pinned by its driver's topology key
	// looks free on this list; nothing is let go before a quorum read,
	// which lists them again (confirmed).
	csinodes, csiErr := b.listCSINodes(ctx, "0")
	topo := newNodeTopology(nodes.Items, csinodes)
	var w warnings
	groups = b.discovered(groups, &w)
	inv := newInventory(groups, nodes.Items, pvs.Items, topo)
	// Held terminations first: nothing slow may come before their heartbeat.
	errs := []error{b.lifecycleActions(ctx, inv), csiErr}
	zoneErr := b.zonePolicy(ctx, inv, &w)
	if inv.regrouped { // a split moved instances: protect them in their new groups
		if groups, err := b.cloud.DescribeGroups(ctx, b.opts.Selector); err != nil {
			zoneErr = errors.Join(zoneErr, err)
		} else {
			inv = newInventory(b.discovered(groups, nil), nodes.Items, pvs.Items, topo)
		}
	}
	errs = append(errs,
		zoneErr,
		b.protect(ctx, inv),
		b.ensureHooks(ctx, inv),
		b.orphans(ctx, inv),
		b.publish(ctx, inv, &w),
	)
	b.emit(ctx, &w)
	if err = errors.Join(errs...); err == nil {
		b.lastSuccess.Store(b.clock.Now().UnixNano())
	}
	return err
}

// annotateHeld is the part of protect that needs no AWS call, for a loop
// that could not read the groups: every node holding a bound local volume
// gets the scale-down-disabled annotation (owned, as protect records it).
// It removes nothing; scale-in protection and the hook wait for a loop
// that reads the groups.
func (b *Balancer) annotateHeld(ctx context.Context, inv *inventory) error {
	var errs []error
	for _, n := range inv.nodes {
		vols := inv.held[n.Name]
		if len(vols) == 0 || n.Annotations[AnnotationScaleDownDisabled] == "true" {
			continue
		}
		if err := b.patchAnnotations(ctx, n.Name, map[string]any{AnnotationScaleDownDisabled: "true", AnnotationProtectedBy: Source}); err != nil {
			errs = append(errs, err)
			continue
		}
		b.recorder.Eventf(n, v1.EventTypeNormal, ReasonProtected, "%s", msgProtected(vols))
	}
	return errors.Join(errs...)
}

// confirmed returns the inventory read again from the apiserver itself (a
// quorum read, past the watch cache the loop's lists come from), once per
// loop. Every step that lets an instance go or removes a protection asks it
// first: one stale list must never be enough.
func (b *Balancer) confirmed(ctx context.Context, inv *inventory) (*inventory, error) {
	if inv.quorum != nil {
		return inv.quorum, nil
	}
	nodes, err := b.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes again before releasing anything: %w", err)
	}
	pvs, err := b.kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing persistent volumes again before releasing anything: %w", err)
	}
	csinodes, err := b.listCSINodes(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("%w, again before releasing anything", err)
	}
	inv.quorum = newInventory(inv.groups, nodes.Items, pvs.Items, newNodeTopology(nodes.Items, csinodes))
	return inv.quorum, nil
}

// inventory indexes one snapshot of groups, nodes and volumes.
type inventory struct {
	groups    []asg.Group
	instances map[string]instanceRef          // by instance id
	nodes     []*v1.Node                      // sorted by name
	nodeOf    map[string]*v1.Node             // by instance id
	instOf    map[string]string               // node name -> instance id
	held      map[string][]string             // node name -> bound local volumes on it
	volumes   map[string]*v1.PersistentVolume // bound local volumes by name
	orphans   []*v1.PersistentVolume          // bound local volumes whose node is gone
	badIDs    map[string]error                // node name -> providerID problem
	named     map[string][]string             // instance id -> bound local volumes that record it
	topo      *nodeTopology                   // CSI volumes pinned by their driver's topology key
	regrouped bool                            // a split moved instances after the snapshot
	quorum    *inventory                      // the same read past the watch cache, see confirmed
}

type instanceRef struct {
	group *asg.Group
	inst  *asg.GroupInstance
}

func newInventory(groups []asg.Group, nodes []v1.Node, pvs []v1.PersistentVolume, topo *nodeTopology) *inventory {
	inv := &inventory{
		groups: groups, instances: map[string]instanceRef{}, nodeOf: map[string]*v1.Node{}, instOf: map[string]string{},
		held: map[string][]string{}, badIDs: map[string]error{}, volumes: map[string]*v1.PersistentVolume{},
		named: map[string][]string{}, topo: topo,
	}
	for gi := range groups {
		g := &groups[gi]
		for ii := range g.Instances {
			inv.instances[g.Instances[ii].ID] = instanceRef{group: g, inst: &g.Instances[ii]}
		}
	}
	byHost := make(map[string]*v1.Node, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		inv.nodes = append(inv.nodes, n)
		byHost[n.Name] = n
		if h := n.Labels[v1.LabelHostname]; h != "" {
			byHost[h] = n
		}
		if n.Spec.ProviderID == "" {
			continue
		}
		if _, id, err := asg.ParseProviderID(n.Spec.ProviderID); err != nil {
			inv.badIDs[n.Name] = err
		} else {
			inv.nodeOf[id], inv.instOf[n.Name] = n, id
		}
	}
	sort.Slice(inv.nodes, func(i, j int) bool { return inv.nodes[i].Name < inv.nodes[j].Name })
	for i := range pvs {
		pv := &pvs[i]
		hosts, _ := localHosts(pv, topo)
		if len(hosts) > 0 {
			inv.volumes[pv.Name] = pv
			if id := pv.Annotations[AnnotationInstanceID]; id != "" {
				inv.named[id] = append(inv.named[id], pv.Name)
			}
		}
		found := false
		for _, h := range hosts {
			if n := byHost[h]; n != nil {
				inv.held[n.Name] = append(inv.held[n.Name], pv.Name)
				found = true
			}
		}
		if len(hosts) > 0 && !found {
			inv.orphans = append(inv.orphans, pv)
		}
	}
	return inv
}

// boundLocalHosts returns the hostnames a bound node-local volume is pinned to
// by its required node affinity; nil for any other volume. A local or
// hostPath volume is node-local by its source; any other (a CSI driver's
// local volume) when every term of its affinity names hosts, since one term
// without a host would let it follow the pod elsewhere.
func boundLocalHosts(pv *v1.PersistentVolume) []string {
	hosts, _ := localHosts(pv, nil)
	return hosts
}

// localHosts is boundLocalHosts, where a term of a CSI volume may also pin
// it to a node by its driver's topology key (nodeTopology; topo may be nil),
// and a term of a local or hostPath volume without a hostname pins it to
// every node it selects (nodeTopology.selected). byTopology says whether a
// term did either: such a pin is not a hostname that can be checked again.
func localHosts(pv *v1.PersistentVolume, topo *nodeTopology) (out []string, byTopology bool) {
	if pv.Status.Phase != v1.VolumeBound || pv.Spec.ClaimRef == nil {
		return nil, false
	}
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return nil, false
	}
	local := pv.Spec.Local != nil || pv.Spec.HostPath != nil
	for _, t := range pv.Spec.NodeAffinity.Required.NodeSelectorTerms {
		var hosts []string
		for _, r := range t.MatchExpressions {
			if r.Key == v1.LabelHostname && r.Operator == v1.NodeSelectorOpIn {
				hosts = append(hosts, r.Values...)
			}
		}
		for _, r := range t.MatchFields {
			if r.Key == "metadata.name" && r.Operator == v1.NodeSelectorOpIn {
				hosts = append(hosts, r.Values...)
			}
		}
		if len(hosts) == 0 && local {
			// Node-local by its source, whatever label pins it (OpenEBS
			// Local PV Hostpath's NodeAffinityLabels, a hand-made PV): hold
			// every node the term selects, too many rather than none. A term
			// no node matches leaves a mark that matches no node: the volume
			// is an orphan, reported and never released automatically.
			if topo == nil {
				continue
			}
			hosts, byTopology = topo.selected(t), true
		}
		if len(hosts) == 0 && !local {
			h, ok := topo.pinned(pv, t)
			if !ok {
				return nil, false
			}
			hosts, byTopology = append(hosts, h), true
		}
		out = append(out, hosts...)
	}
	slices.Sort(out)
	return slices.Compact(out), byTopology
}

// zonePolicy reports groups spanning zones and suspends their AZRebalance. It
// never resumes it: resuming an unbalanced group starts the rebalancing.
func (b *Balancer) zonePolicy(ctx context.Context, inv *inventory, w *warnings) error {
	var errs []error
	multi := 0
	for i := range inv.groups {
		g := &inv.groups[i]
		if len(g.Zones) < 2 || splitDoneGroup(g) {
			continue
		}
		multi++
		w.warn(ReasonMultiZoneGroup, "%s", msgMultiZoneGroup(g))
		if !g.Suspended(asg.ProcessAZRebalance) {
			if err := b.cloud.SuspendProcesses(ctx, g.Name, asg.ProcessAZRebalance); err != nil {
				errs = append(errs, fmt.Errorf("suspending AZRebalance on %s: %w", g.Name, err))
				continue
			}
			klog.FromContext(ctx).Info("Suspended AZRebalance", "group", g.Name, "zones", g.Zones)
			// Every time: someone who resumes it again and again must hear it each time.
			w.always(v1.EventTypeNormal, ReasonSuspendedAZRebalance, msgSuspendedAZRebalance(g))
		}
		if b.opts.Enforce == EnforceSplit {
			changed, err := b.splitGroup(ctx, g, w)
			inv.regrouped = inv.regrouped || changed
			errs = append(errs, err)
		}
	}
	b.metrics.multiZoneGroups.Set(float64(multi))
	return errors.Join(errs...)
}

// discovered returns the groups the balancer manages among those described:
// with auto-discovery, those whose tags also have the selector's values (what
// the IAM policy's conditions allow); the others are reported when w is not nil.
func (b *Balancer) discovered(groups []asg.Group, w *warnings) []asg.Group {
	if len(b.opts.Selector.TagValues) == 0 {
		return groups
	}
	out := groups[:0:0]
	for i := range groups {
		g := &groups[i]
		ok := true
		for _, k := range sortedKeys(b.opts.Selector.TagValues) {
			if want := b.opts.Selector.TagValues[k]; g.Tags[k] != want {
				ok = false
				if w != nil {
					w.warn(ReasonGroupNotManaged, "%s", msgGroupNotManaged(g, k, g.Tags[k], want))
				}
				break
			}
		}
		if ok {
			out = append(out, *g)
		}
	}
	return out
}
