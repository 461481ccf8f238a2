package balancer

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/ballast-k8s/ballast/internal/asg"
)

const (
	// AnnotationInstanceID and AnnotationZone record, on a bound local
	// volume, the instance and zone of the node it is on, written while the
	// node exists: once the node is deleted nothing else in the cluster maps
	// the volume to an instance, and a balancer restarted after the node
	// went must still be able to ask EC2 what became of it.
	AnnotationInstanceID = "ballast.k8s.io/instance-id"
	AnnotationZone       = "ballast.k8s.io/zone"
	// AnnotationGroup records, next to AnnotationInstanceID, the Auto
	// Scaling group that instance was last seen in: a heartbeat names the
	// group, the hook and the instance, and a balancer restarted while
	// neither DescribeAutoScalingGroups nor DescribeAutoScalingInstances
	// answers still holds the instance's termination by it.
	AnnotationGroup = "ballast.k8s.io/group"
	// AnnotationOrphanedSince is when the balancer first saw the volume's
	// node gone and its instance terminated (RFC 3339). The release delay
	// runs from it, across restarts.
	AnnotationOrphanedSince = "ballast.k8s.io/orphaned-since"
	// AnnotationSeenTerminated is the instance, recorded on an orphaned
	// volume, that EC2 said was terminated in an earlier loop. EC2 keeps a
	// terminated instance visible for about an hour, then forgets it; only
	// an instance seen terminated first counts as gone once EC2 no longer
	// knows it (an ID EC2 never knew proves nothing: DescribeInstances
	// leaves out instances "that you do not own").
	AnnotationSeenTerminated = "ballast.k8s.io/seen-terminated"
	// AnnotationReleaseOrphansAfter, on a StorageClass, opts its orphaned
	// volumes into release: a Go duration ("30m", "2h") after which the
	// balancer deletes the claim of a volume whose node is gone and whose
	// instance is terminated, so that its StatefulSet recreates the claim and
	// the pod starts over on a live node. Without it orphans are only reported.
	AnnotationReleaseOrphansAfter = "ballast.k8s.io/release-orphans-after"

	// MinReleaseDelay is the shortest release delay a StorageClass may ask for.
	MinReleaseDelay = 5 * time.Minute

	// DefaultMaxOrphanReleases is how many claims one loop deletes at most.
	DefaultMaxOrphanReleases = 5

	// maxPlacementWrites caps the volumes one loop annotates, so that the
	// first loop over thousands of volumes does not outlast the termination
	// hook's heartbeat timeout; the rest follow in the next loops.
	maxPlacementWrites = 200
)

// Results of the orphan release counter.
const (
	releaseDeleted  = "deleted"
	releaseConflict = "precondition_failed"
	releaseSkipped  = "skipped"
	releaseError    = "error"
)

// orphans reports held nodes whose instance is in no managed group, and bound
// local volumes whose node is gone; it releases the claims of the latter when
// their StorageClass opted in.
func (b *Balancer) orphans(ctx context.Context, inv *inventory) error {
	var notInGroup []string
	for _, n := range inv.nodes {
		if id := inv.instOf[n.Name]; id != "" && len(inv.held[n.Name]) > 0 {
			if _, ok := inv.instances[id]; !ok {
				notInGroup = append(notInGroup, id)
			}
		}
	}
	errs := []error{b.recordPlacement(ctx, inv)}
	held, err := b.orphanedNodes(ctx, inv, notInGroup)
	errs = append(errs, err)
	gone, err := b.orphanedVolumes(ctx, inv)
	errs = append(errs, err)
	b.metrics.orphanedVolumes.Set(float64(held + gone))
	return errors.Join(errs...)
}

// recordPlacement writes the instance and zone of its node on every bound
// local volume whose node exists, and clears the orphan mark of a volume
// whose node came back; at most maxPlacementWrites volumes per loop.
func (b *Balancer) recordPlacement(ctx context.Context, inv *inventory) error {
	hostsOf := map[string][]string{} // volume -> nodes that hold it
	for _, n := range inv.nodes {
		for _, pv := range inv.held[n.Name] {
			hostsOf[pv] = append(hostsOf[pv], n.Name)
		}
	}
	var errs []error
	// A node name that now runs another instance than the one recorded:
	// the record is kept while the recorded instance may still exist (it
	// holds the data, and may be held in Terminating:Wait by this record).
	var ask, askZones []string
	for name, nodes := range hostsOf {
		pv := inv.volumes[name]
		if len(nodes) != 1 {
			continue
		}
		if id, was := inv.instOf[nodes[0]], pv.Annotations[AnnotationInstanceID]; id != "" && was != "" && was != id {
			if ref, inGroup := inv.instances[was]; !inGroup || ref.inst.LifecycleState == "Terminated" {
				ask, askZones = append(ask, was), append(askZones, pv.Annotations[AnnotationZone])
			}
		}
	}
	var state map[string]string
	var regions map[string]bool
	if len(ask) > 0 {
		witnesses := b.witnesses(inv, askZones)
		var err error
		if state, err = b.instanceStates(ctx, withWitnesses(ask, witnesses)); err != nil {
			errs = append(errs, fmt.Errorf("describing %d instances recorded on volumes whose node runs another instance now: %w", len(ask), err))
		} else {
			regions = b.verifiedZones(state, witnesses)
		}
	}
	// Volumes of instances AWS is terminating first: the cap defers the
	// rest, and a held instance whose node goes before its volume records it
	// would be named by nothing (its hold then ends at the hook's timeout).
	names := sortedKeys(hostsOf)
	terminating := func(name string) bool {
		nodes := hostsOf[name]
		ref, ok := inv.instances[inv.instOf[nodes[0]]]
		return len(nodes) == 1 && ok && ref.inst.LifecycleState == asg.StateTerminatingWait
	}
	slices.SortStableFunc(names, func(a, b string) int {
		switch ta, tb := terminating(a), terminating(b); {
		case ta && !tb:
			return -1
		case tb && !ta:
			return 1
		}
		return 0
	})
	writes, deferred := 0, 0
	for _, name := range names {
		pv := inv.volumes[name]
		patch := map[string]any{}
		if _, ok := pv.Annotations[AnnotationOrphanedSince]; ok {
			patch[AnnotationOrphanedSince] = nil
		}
		// A volume pinned to several live nodes names no single instance.
		if nodes := hostsOf[name]; len(nodes) == 1 {
			if id := inv.instOf[nodes[0]]; id != "" {
				n := inv.nodeOf[id]
				was := pv.Annotations[AnnotationInstanceID]
				replace := was != id
				if replace && was != "" {
					// The node name now belongs to another instance (private IPs
					// are reused, custom hostnames): the data stayed on the old one.
					ref, inGroup := inv.instances[was]
					if (inGroup && ref.inst.LifecycleState != "Terminated") || state == nil || !gone(state[was], pv.Annotations[AnnotationZone], regions) {
						replace = false
						b.warnObject(pv, ReasonVolumeNodeReplaced, "%s", msgVolumeNodeReplacedKept(pv.Name, was, n.Name, id))
					} else {
						b.warnObject(pv, ReasonVolumeNodeReplaced, "%s", msgVolumeNodeReplaced(pv.Name, was, n.Name, id))
					}
				}
				if replace {
					patch[AnnotationInstanceID] = id
					if z := nodeZone(n); z != "" && pv.Annotations[AnnotationZone] != z {
						patch[AnnotationZone] = z
					}
				}
				if replace || was == id {
					ref, inGroup := inv.instances[id]
					switch g := pv.Annotations[AnnotationGroup]; {
					case inGroup && g != ref.group.Name:
						patch[AnnotationGroup] = ref.group.Name
					case !inGroup && replace && g != "":
						patch[AnnotationGroup] = nil // another instance's group
					}
				}
			}
		}
		switch {
		case len(patch) == 0:
		case writes >= maxPlacementWrites:
			deferred++
		default:
			writes++
			errs = append(errs, b.patchVolume(ctx, pv.Name, patch))
		}
	}
	if deferred > 0 {
		klog.FromContext(ctx).V(2).Info("Recording the instances of bound local volumes over several loops", "written", writes, "deferred", deferred)
	}
	return errors.Join(errs...)
}

// nodeZone is the zone of a node's providerID, or of its zone label.
func nodeZone(n *v1.Node) string {
	if z, _, err := asg.ParseProviderID(n.Spec.ProviderID); err == nil && z != "" {
		return z
	}
	return n.Labels[v1.LabelTopologyZone]
}

// orphanedNodes reports held nodes whose instance is in no managed group
// (terminated, or outside the selector); it returns the volumes they hold
// whose instance is gone.
func (b *Balancer) orphanedNodes(ctx context.Context, inv *inventory, notInGroup []string) (int, error) {
	if len(notInGroup) == 0 {
		return 0, nil
	}
	state, err := b.instanceStates(ctx, notInGroup)
	if err != nil {
		return 0, fmt.Errorf("describing %d instances outside managed groups: %w", len(notInGroup), err)
	}
	count := 0
	for _, id := range notInGroup {
		n := inv.nodeOf[id]
		switch s := state[id]; s {
		case "", "shutting-down", "terminated":
			count += len(inv.held[n.Name])
			b.warnNode(n, ReasonOrphanedVolume, "%s", msgOrphanedNode(inv.held[n.Name], id, orGone(s)))
		default:
			b.warnNode(n, ReasonInstanceNotInGroup, "%s", msgInstanceNotInGroup(id, s))
		}
	}
	return count, nil
}

func orGone(s string) string {
	if s == "" {
		return "gone"
	}
	return s
}

// instanceStates maps the ids EC2 still knows to their state; the zone EC2
// places each in is under zoneKey(id).
func (b *Balancer) instanceStates(ctx context.Context, ids []string) (map[string]string, error) {
	slices.Sort(ids)
	ids = slices.Compact(ids)
	instances, err := b.cloud.DescribeInstances(ctx, ids)
	if err != nil {
		return nil, err
	}
	state := make(map[string]string, 2*len(instances))
	for _, i := range instances {
		state[i.ID] = i.State
		state[zoneKey(i.ID)] = i.Zone
	}
	return state, nil
}

func zoneKey(id string) string { return "zone\x00" + id }

// witnessesPerZone is how many live instances of a zone are asked about to
// learn whether EC2 answers for that zone.
const witnessesPerZone = 3

// witnesses returns, for each zone of the configured region among zones, a
// few instances that the cluster's own nodes say live there (their
// providerIDs), with that zone: if EC2 knows none of them in that zone, its
// silence about an orphan's instance there proves nothing (wrong region,
// wrong account, wrong endpoint). Group listings never witness: the groups
// of a sibling account with the same cluster tags would, and zone names are
// mapped per account.
func (b *Balancer) witnesses(inv *inventory, zones []string) map[string]string {
	want := map[string]bool{}
	for _, z := range zones {
		if inRegion(z, b.cloud.Region()) {
			want[z] = true
		}
	}
	picked := map[string][]string{}
	add := func(zone, id string) {
		if want[zone] && len(picked[zone]) < witnessesPerZone && !slices.Contains(picked[zone], id) {
			picked[zone] = append(picked[zone], id)
		}
	}
	for _, n := range inv.nodes {
		if z, id, err := asg.ParseProviderID(n.Spec.ProviderID); err == nil {
			add(z, id)
		}
	}
	out := map[string]string{}
	for z, ids := range picked {
		for _, id := range ids {
			out[id] = z
		}
	}
	return out
}

// verifiedZones returns the zones in which EC2 answered for a witness that
// is not terminated, placing it in the zone its node's providerID names.
func (b *Balancer) verifiedZones(state map[string]string, witnesses map[string]string) map[string]bool {
	out := map[string]bool{}
	for id, want := range witnesses {
		if s, z := state[id], state[zoneKey(id)]; s != "" && s != "terminated" && z == want && inRegion(z, b.cloud.Region()) {
			out[z] = true
		}
	}
	return out
}

// withWitnesses is ids followed by the witnesses' ids.
func withWitnesses(ids []string, witnesses map[string]string) []string {
	return append(slices.Clone(ids), sortedKeys(witnesses)...)
}

// inRegion reports whether zone is one of region's: us-east-1a, or a Local
// or Wavelength Zone such as us-east-1-bos-1a.
func inRegion(zone, region string) bool {
	rest, ok := strings.CutPrefix(zone, region)
	if !ok || region == "" || rest == "" {
		return false
	}
	if rest[0] == '-' {
		return len(rest) > 1
	}
	return strings.Trim(rest, "abcdefghijklmnopqrstuvwxyz") == ""
}

// orphan is a bound local volume whose node is gone.
type orphan struct {
	pv    *v1.PersistentVolume
	hosts []string
	// byTopology: a term pins it by its CSI driver's topology key
	// (nodeTopology), not by a hostname; it is never released.
	byTopology bool
	instance   string
	since      time.Time
	delay      time.Duration
	// seen is set once this loop recorded EC2 saying the instance is terminated.
	seen bool
}

// instanceIDPattern is what an EC2 instance ID looks like (8 or 17 hex digits).
var instanceIDPattern = regexp.MustCompile(`^i-[0-9a-f]{8}([0-9a-f]{9})?$`)

// gone reports whether the orphan's instance, in EC2 state s, has ended for
// good: terminated, or no longer known to EC2 (in a verified zone, see
// gone) after a loop saw it terminated (AnnotationSeenTerminated).
func (o *orphan) gone(s string, regions map[string]bool) bool {
	if s == "" && !o.seen && o.pv.Annotations[AnnotationSeenTerminated] != o.instance {
		return false
	}
	return gone(s, o.pv.Annotations[AnnotationZone], regions)
}

func (o *orphan) claim() string {
	return o.pv.Spec.ClaimRef.Namespace + "/" + o.pv.Spec.ClaimRef.Name
}

// report emits the same warning on the volume and on its claim, where the
// owners of the StatefulSet look.
func (b *Balancer) report(pv *v1.PersistentVolume, reason, format string, args ...any) {
	b.warnObject(pv, reason, format, args...)
	b.warnObject(claimOf(pv), reason, format, args...)
}

// claimOf is a reference to the claim a volume is bound to, for events.
func claimOf(pv *v1.PersistentVolume) *v1.PersistentVolumeClaim {
	ref := pv.Spec.ClaimRef
	return &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name, UID: ref.UID}}
}

// orphanedVolumes classifies the bound local volumes whose node is gone,
// reports each, and releases those that are confirmed, opted in and due. It
// returns how many there are.
//
// Nothing is released on a guess: the instance must be the one recorded while
// the node existed, no node may hold it now, and EC2 must say it is
// terminated (or no longer know it, in a region where the balancer sees
// instances); everything is checked again just before the claim is deleted.
func (b *Balancer) orphanedVolumes(ctx context.Context, inv *inventory) (int, error) {
	if len(inv.orphans) == 0 {
		return 0, nil
	}
	var ids []string
	var cands []*orphan
	var zones []string
	for _, pv := range inv.orphans {
		o := &orphan{pv: pv, instance: pv.Annotations[AnnotationInstanceID]}
		o.hosts, o.byTopology = localHosts(pv, inv.topo)
		switch n := inv.nodeOf[o.instance]; {
		case o.instance == "":
			b.report(pv, ReasonOrphanedVolume, "%s", msgOrphanUnrecorded(o))
		case !instanceIDPattern.MatchString(o.instance):
			// EC2 answers nothing for a filter on such a value: never
			// taken for a terminated instance.
			b.report(pv, ReasonOrphanedVolume, "%s", msgOrphanNotInstanceID(o))
		case n != nil:
			b.report(pv, ReasonOrphanedVolume, "%s", msgOrphanInstanceIsNode(o, n.Name))
		default:
			ids = append(ids, o.instance)
			cands = append(cands, o)
			zones = append(zones, pv.Annotations[AnnotationZone])
		}
	}
	if len(ids) == 0 {
		return len(inv.orphans), nil
	}
	witnesses := b.witnesses(inv, zones)
	state, err := b.instanceStates(ctx, withWitnesses(ids, witnesses))
	if err != nil {
		return len(inv.orphans), fmt.Errorf("describing the instances of %d orphaned volumes: %w", len(ids), err)
	}
	regions := b.verifiedZones(state, witnesses)
	var errs []error
	var due []*orphan
	classes := map[string]*classPolicy{}
	now := b.clock.Now()
	for _, o := range cands {
		pv := o.pv
		s := state[o.instance]
		if s == "terminated" && pv.Annotations[AnnotationSeenTerminated] != o.instance {
			if err := b.patchVolume(ctx, pv.Name, map[string]any{AnnotationSeenTerminated: o.instance}); err != nil {
				errs = append(errs, err)
			} else {
				o.seen = true
			}
		}
		if !o.gone(s, regions) {
			what := orUnknown(s)
			if s == "" {
				what = "unknown to EC2, which never said it was terminated"
			}
			b.report(pv, ReasonOrphanedVolume, "%s", msgOrphanMayComeBack(o, what))
			if _, ok := pv.Annotations[AnnotationOrphanedSince]; ok {
				errs = append(errs, b.patchVolume(ctx, pv.Name, map[string]any{AnnotationOrphanedSince: nil}))
			}
			continue
		}
		since, err := time.Parse(time.RFC3339, pv.Annotations[AnnotationOrphanedSince])
		if err != nil { // first seen now, or the mark was mangled: the delay starts over
			since = now.UTC().Truncate(time.Second)
			if err := b.patchVolume(ctx, pv.Name, map[string]any{AnnotationOrphanedSince: since.Format(time.RFC3339)}); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		o.since = since
		what := msgOrphaned(o, orGone(s))
		policy, err := b.classPolicy(ctx, pv.Spec.StorageClassName, classes)
		switch {
		case err != nil:
			errs = append(errs, err)
		case !policy.optIn:
			b.report(pv, ReasonOrphanedVolume, "%s", msgOrphanNotOptedIn(what, pv.Spec.StorageClassName))
		case policy.invalid != "":
			b.report(pv, ReasonOrphanedVolume, "%s", msgOrphanInvalidPolicy(what, pv.Spec.StorageClassName, policy.invalid))
		case now.Before(since.Add(policy.delay)):
			b.report(pv, ReasonOrphanedVolume, "%s", msgOrphanReleaseDue(what, since.Add(policy.delay), pv.Spec.StorageClassName, policy.delay))
		default:
			o.delay = policy.delay
			due = append(due, o)
		}
	}
	errs = append(errs, b.release(ctx, inv, due))
	return len(inv.orphans), errors.Join(errs...)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown to EC2"
	}
	return s
}

// gone reports whether an instance in state s (EC2's, "" when EC2 does not
// know it) has ended for good. Silence is proof only in a verified zone: one
// of the configured region in which EC2 answered for another live instance
// (verifiedZones). A balancer asking the wrong region, account or endpoint
// hears nothing about any instance, and must not take them all for gone.
func gone(s, zone string, verified map[string]bool) bool {
	switch s {
	case "terminated":
		return true
	case "":
		return zone != "" && verified[zone]
	}
	return false
}

// classPolicy is what a StorageClass says about releasing its orphans.
type classPolicy struct {
	optIn   bool
	invalid string
	delay   time.Duration
}

// classPolicy reads the opt-in of a StorageClass, once per loop. A missing
// class opts nothing in; a malformed value is reported on the class and
// releases nothing.
func (b *Balancer) classPolicy(ctx context.Context, name string, cache map[string]*classPolicy) (*classPolicy, error) {
	if p, ok := cache[name]; ok {
		return p, nil
	}
	p := &classPolicy{}
	if name == "" {
		cache[name] = p
		return p, nil
	}
	sc, err := b.kube.StorageV1().StorageClasses().Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cache[name] = p
		return p, nil
	case err != nil:
		return nil, fmt.Errorf("getting StorageClass %s: %w", name, err)
	}
	v, ok := sc.Annotations[AnnotationReleaseOrphansAfter]
	p.optIn = ok
	if ok {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		switch {
		case err != nil:
			p.invalid = fmt.Sprintf("%q is not a duration such as 30m or 2h", v)
		case d <= 0:
			p.invalid = fmt.Sprintf("%q is not a positive duration", v)
		case d < MinReleaseDelay:
			p.invalid = fmt.Sprintf("%q is too short: the delay must be at least %s, so that a node that restarts or a watch that lags never costs a claim", v, MinReleaseDelay)
		default:
			p.delay = d
		}
		if p.invalid != "" {
			b.warnObject(sc, ReasonInvalidReleaseDelay, "%s", msgInvalidReleaseDelay(p.invalid))
		}
	}
	cache[name] = p
	return p, nil
}

// release deletes, oldest orphan first and at most MaxOrphanReleases per loop,
// the claims of the due orphans that pass every check again, read fresh from
// the apiserver and from EC2. The delete carries the claim's UID as a
// precondition: a claim its StatefulSet already recreated is never deleted.
func (b *Balancer) release(ctx context.Context, inv *inventory, due []*orphan) error {
	if len(due) == 0 {
		return nil
	}
	limit := b.opts.MaxOrphanReleases
	if limit == 0 {
		limit = DefaultMaxOrphanReleases
	}
	slices.SortFunc(due, func(a, c *orphan) int {
		if d := a.since.Compare(c.since); d != 0 {
			return d
		}
		return strings.Compare(a.pv.Name, c.pv.Name)
	})
	logger := klog.FromContext(ctx)
	var errs []error
	// Claims already deleted or being deleted, and claims recreated since,
	// are done with: only live claims take a place in this loop's budget.
	var picked []*orphan
	for _, o := range due {
		if len(picked) >= max(limit, 0) {
			logger.V(2).Info("Orphan release deferred to a later loop", "volume", o.pv.Name, "limit", limit)
			continue
		}
		ref := o.pv.Spec.ClaimRef
		if ref.UID == "" {
			b.report(o.pv, ReasonOrphanNotReleased, "%s", msgClaimWithoutUID(o.pv.Name, o.claim()))
			continue
		}
		pvc, err := b.kube.CoreV1().PersistentVolumeClaims(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("getting claim %s: %w", o.claim(), err))
			continue
		case pvc.UID != ref.UID:
			b.metrics.orphanReleases.WithLabelValues(releaseSkipped).Inc()
			b.report(o.pv, ReasonOrphanNotReleased, "%s", msgClaimRecreated(o.pv.Name, o.claim(), pvc.UID, ref.UID))
			continue
		case pvc.DeletionTimestamp != nil:
			continue
		}
		picked = append(picked, o)
	}
	if len(picked) == 0 {
		return errors.Join(errs...)
	}

	ids := make([]string, 0, len(picked))
	zones := make([]string, 0, len(picked))
	for _, o := range picked {
		ids = append(ids, o.instance)
		zones = append(zones, o.pv.Annotations[AnnotationZone])
	}
	witnesses := b.witnesses(inv, zones)
	state, err := b.instanceStates(ctx, withWitnesses(ids, witnesses))
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("describing the instances of %d orphaned volumes before releasing them: %w", len(ids), err))...)
	}
	regions := b.verifiedZones(state, witnesses)
	for _, o := range picked {
		if reason := b.recheck(ctx, o, state, regions); reason != "" {
			b.metrics.orphanReleases.WithLabelValues(releaseSkipped).Inc()
			b.report(o.pv, ReasonOrphanNotReleased, "%s", msgClaimNotDeleted(o.pv.Name, o.claim(), reason))
			continue
		}
		uid := o.pv.Spec.ClaimRef.UID
		err := b.kube.CoreV1().PersistentVolumeClaims(o.pv.Spec.ClaimRef.Namespace).Delete(ctx, o.pv.Spec.ClaimRef.Name,
			metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		switch {
		case apierrors.IsConflict(err):
			b.metrics.orphanReleases.WithLabelValues(releaseConflict).Inc()
			b.report(o.pv, ReasonOrphanNotReleased, "%s", msgClaimChanged(o.pv.Name, o.claim(), uid))
		case apierrors.IsNotFound(err):
		case err != nil:
			b.metrics.orphanReleases.WithLabelValues(releaseError).Inc()
			errs = append(errs, fmt.Errorf("deleting claim %s of orphaned volume %s: %w", o.claim(), o.pv.Name, err))
		default:
			b.metrics.orphanReleases.WithLabelValues(releaseDeleted).Inc()
			logger.Info("Released orphaned local volume", "volume", o.pv.Name, "claim", o.claim(), "uid", string(uid), "instance", o.instance, "orphanedSince", o.since)
			b.report(o.pv, ReasonOrphanReleased, "%s", msgOrphanReleased(o, uid))
		}
	}
	return errors.Join(errs...)
}

// recheck returns why an orphan must not be released after all, "" if it may.
// It reads past the watch cache: a node that came back a second ago counts.
func (b *Balancer) recheck(ctx context.Context, o *orphan, state map[string]string, regions map[string]bool) string {
	if o.byTopology {
		return fmt.Sprintf("it is pinned by its CSI driver's topology key or by a node label (%v), not by a hostname that can be checked again; release it by hand", o.hosts)
	}
	for _, h := range o.hosts {
		_, err := b.kube.CoreV1().Nodes().Get(ctx, h, metav1.GetOptions{})
		switch {
		case err == nil:
			return fmt.Sprintf("node %s exists again", h)
		case !apierrors.IsNotFound(err):
			return fmt.Sprintf("cannot tell whether node %s exists: %v", h, err)
		}
		sel := labels.SelectorFromSet(labels.Set{v1.LabelHostname: h}).String()
		nodes, err := b.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: sel})
		switch {
		case err != nil:
			return fmt.Sprintf("cannot tell whether a node with hostname %s exists: %v", h, err)
		case len(nodes.Items) > 0:
			return fmt.Sprintf("node %s has hostname %s", nodes.Items[0].Name, h)
		}
	}
	if s := state[o.instance]; !o.gone(s, regions) {
		return fmt.Sprintf("instance %s is %s", o.instance, orUnknown(s))
	}
	pv, err := b.kube.CoreV1().PersistentVolumes().Get(ctx, o.pv.Name, metav1.GetOptions{})
	switch {
	case err != nil:
		return fmt.Sprintf("cannot read the volume again: %v", err)
	case pv.DeletionTimestamp != nil || pv.Status.Phase != v1.VolumeBound || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != o.pv.Spec.ClaimRef.UID:
		return "the volume changed: it is no longer bound to the same claim"
	case pv.Annotations[AnnotationInstanceID] != o.instance:
		return fmt.Sprintf("the volume now records instance %q", pv.Annotations[AnnotationInstanceID])
	case !slices.Equal(boundLocalHosts(pv), o.hosts):
		return fmt.Sprintf("the volume is now pinned to nodes %v", boundLocalHosts(pv))
	}
	return ""
}

// patchVolume sets (string) or removes (nil) volume annotations with a merge patch.
func (b *Balancer) patchVolume(ctx context.Context, name string, annotations map[string]any) error {
	return patchMetadataAnnotations(ctx, "persistent volume", name, annotations, func(ctx context.Context, data []byte) error {
		_, err := b.kube.CoreV1().PersistentVolumes().Patch(ctx, name, types.MergePatchType, data, metav1.PatchOptions{FieldManager: Source})
		return err
	})
}

// orphanObjects returns what the orphan step of a planned loop reads beyond
// nodes and volumes: the claims of the volumes whose node is gone and the
// StorageClasses, so that the sandbox can list their release.
func (b *Balancer) orphanObjects(ctx context.Context, nodes []v1.Node, pvs []v1.PersistentVolume, csinodes []storagev1.CSINode) ([]runtime.Object, error) {
	inv := newInventory(nil, nodes, pvs, newNodeTopology(nodes, csinodes))
	if len(inv.orphans) == 0 {
		return nil, nil
	}
	var out []runtime.Object
	classes := map[string]bool{}
	for _, pv := range inv.orphans {
		ref := pv.Spec.ClaimRef
		pvc, err := b.kube.CoreV1().PersistentVolumeClaims(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		switch {
		case err == nil:
			out = append(out, pvc)
		case !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("getting claim %s/%s: %w", ref.Namespace, ref.Name, err)
		}
		if c := pv.Spec.StorageClassName; c != "" && !classes[c] {
			classes[c] = true
			sc, err := b.kube.StorageV1().StorageClasses().Get(ctx, c, metav1.GetOptions{})
			switch {
			case err == nil:
				out = append(out, sc)
			case !apierrors.IsNotFound(err):
				return nil, fmt.Errorf("getting StorageClass %s: %w", c, err)
			}
		}
	}
	return out, nil
}
