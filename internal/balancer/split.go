package balancer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/klog/v2"

	"github.com/ballast-k8s/ballast/internal/aws"
)

// Splitting a multi-zone group G (issue 5, DESIGN "One ASG per zone").
//
// For every zone z of G it creates the group G-z from G's launch template or
// mixed instances policy, tags (cluster-autoscaler's discovery and
// node-template tags included) and lifecycle hooks, then moves G's instances
// there with DetachInstances (decrementing G's desired capacity) and
// AttachInstances, so that no instance is terminated, and it sets the
// scale-in protection again where an instance had it (AWS drops it on
// detach). G is left empty, min=max=desired=0, without its discovery tags
// so that cluster-autoscaler forgets it, and with Launch, Terminate and
// AZRebalance suspended; it is not deleted.
//
// Sizes, with n zones and G's original min and max:
//
//	max(G-z) = max(ceil(max/n), instances in z)  the zone's share of max, raised so every instance fits
//	min(G-z) = min(ceil(min/n), instances in z)  the zone's share of min, never more than it runs,
//	                                             so setting it launches nothing (0 in an empty zone)
//
// Progress lives in AWS only, so a split resumes from any crash: the tag
// TagSplitState on G says "started", "move <zone> <id>[*] ..." (the batch
// being moved, * marking instances that were protected) or "done";
// TagSplitSizes keeps G's original min and max; the per-zone groups carry
// TagSplitFrom. Each run reads that state and derives the remaining steps;
// every step is a no-op or is skipped once done.
const (
	// TagSplitState records the progress of a split on the split group.
	TagSplitState = "ballast.k8s.io/split-state"
	// TagSplitSizes records the split group's original min and max.
	TagSplitSizes = "ballast.k8s.io/split-sizes"
	// TagSplitFrom names, on a per-zone group, the group it was split from.
	TagSplitFrom = "ballast.k8s.io/split-from"

	// EnforceSuspend reports multi-zone groups and suspends their AZRebalance.
	EnforceSuspend = "suspend"
	// EnforceSplit also splits them into one group per zone.
	EnforceSplit = "split"

	// ReasonSplitGroup: a group was split, or a split step was made.
	ReasonSplitGroup = "SplitGroup"
	// ReasonSplitBlocked: a split cannot finish yet.
	ReasonSplitBlocked = "SplitBlocked"

	splitStarted  = "started"
	splitDone     = "done"
	splitMove     = "move"
	maxTagValue   = 256 // Auto Scaling tag values
	caTagPrefix   = "k8s.io/cluster-autoscaler/"
	protectedMark = "*"
)

// EnforceValues are the valid zone policies.
var EnforceValues = []string{EnforceSuspend, EnforceSplit}

// suspendedForSplit keep AWS from replacing or removing capacity of the
// group being emptied: no launch to replace a detached instance, no
// termination, no rebalancing towards the zones already moved.
var suspendedForSplit = []string{aws.ProcessAZRebalance, "Launch", "Terminate"}

// SplitCloud is what splitting needs beyond Cloud; *aws.Client implements it.
type SplitCloud interface {
	Cloud
	CreateZoneGroup(ctx context.Context, zg aws.ZoneGroup) error
	UpdateGroupSize(ctx context.Context, group string, s aws.Sizes) error
	DetachInstances(ctx context.Context, group string, ids []string) error
	AttachInstances(ctx context.Context, group string, ids []string) error
	SetGroupTags(ctx context.Context, group string, tags map[string]string) error
	DeleteGroupTags(ctx context.Context, group string, keys []string) error
}

var (
	_ SplitCloud = (*aws.Client)(nil)
	_ SplitCloud = (*recordingCloud)(nil)
)

// ZoneGroupName is the name of the group of zone split from group.
func ZoneGroupName(group, zone string) string { return group + "-" + zone }

// splitStep is one AWS write of a split.
type splitStep struct {
	Action
	do func(context.Context, SplitCloud) error
}

// splitSnapshot is what a split reads from AWS before deciding its steps.
type splitSnapshot struct {
	old        aws.Group
	oldHooks   []aws.Hook
	zones      []string
	zoneGroups map[string]*aws.Group // by zone, the per-zone groups that exist
	zoneHooks  map[string][]aws.Hook
	running    map[string]bool // instances of the in-flight batch found in no group: still running?
}

// Split splits a group into one group per zone and returns the writes it made.
// Run it again after any failure: it carries on where the last run stopped.
func (b *Balancer) Split(ctx context.Context, group string) ([]Action, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cloud, ok := b.cloud.(SplitCloud)
	if !ok {
		return nil, errors.New("the AWS client cannot split groups")
	}
	return b.split(ctx, cloud, group)
}

// PlanSplit returns the writes Split would make now, without making them.
func (b *Balancer) PlanSplit(ctx context.Context, group string) ([]Action, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	snap, err := b.splitSnapshot(ctx, group)
	if err != nil {
		return nil, err
	}
	steps, blocked, err := splitSteps(snap, b.opts.Selector)
	actions := make([]Action, 0, len(steps))
	for _, s := range steps {
		actions = append(actions, s.Action)
	}
	return actions, errors.Join(err, blockedErr(group, blocked))
}

func (b *Balancer) split(ctx context.Context, cloud SplitCloud, group string) ([]Action, error) {
	logger := klog.FromContext(ctx)
	snap, err := b.splitSnapshot(ctx, group)
	if err != nil {
		return nil, err
	}
	for _, id := range sortedKeys(snap.running) {
		if !snap.running[id] {
			logger.Info("Warning: an instance detached by an interrupted split no longer runs", "group", group, "instance", id)
		}
	}
	steps, blocked, err := splitSteps(snap, b.opts.Selector)
	if err != nil {
		return nil, err
	}
	var done []Action
	for _, s := range steps {
		if err := s.do(ctx, cloud); err != nil {
			return done, fmt.Errorf("splitting %s: %s %s %s: %w", group, s.Target, s.Verb, s.Detail, err)
		}
		logger.Info("Split step", "group", group, "target", s.Target, "action", s.Verb, "detail", s.Detail)
		done = append(done, s.Action)
	}
	return done, blockedErr(group, blocked)
}

func blockedErr(group string, blocked []string) error {
	if len(blocked) == 0 {
		return nil
	}
	return fmt.Errorf("split of %s cannot finish: %s; run it again once they are settled", group, strings.Join(blocked, "; "))
}

func (b *Balancer) splitSnapshot(ctx context.Context, group string) (*splitSnapshot, error) {
	groups, err := b.cloud.DescribeGroups(ctx, aws.Selector{Names: []string{group}})
	if err != nil {
		return nil, err
	}
	if len(groups) == 0 {
		return nil, fmt.Errorf("auto scaling group %s not found", group)
	}
	snap := &splitSnapshot{old: groups[0], zones: slices.Sorted(slices.Values(groups[0].Zones)),
		zoneGroups: map[string]*aws.Group{}, zoneHooks: map[string][]aws.Hook{}, running: map[string]bool{}}
	if snap.old.Tags[TagSplitState] == splitDone {
		return snap, nil
	}
	if snap.oldHooks, err = b.cloud.DescribeLifecycleHooks(ctx, group); err != nil {
		return nil, fmt.Errorf("describing lifecycle hooks of %s: %w", group, err)
	}
	names := make([]string, 0, len(snap.zones))
	for _, z := range snap.zones {
		names = append(names, ZoneGroupName(group, z))
	}
	zgs, err := b.cloud.DescribeGroups(ctx, aws.Selector{Names: names})
	if err != nil {
		return nil, err
	}
	member := map[string]bool{}
	for _, i := range snap.old.Instances {
		member[i.ID] = true
	}
	for i := range zgs {
		zg := &zgs[i]
		z := strings.TrimPrefix(zg.Name, group+"-")
		if zg.Tags[TagSplitFrom] != group {
			return nil, fmt.Errorf("group %s exists but was not split from %s (tag %s=%q)", zg.Name, group, TagSplitFrom, zg.Tags[TagSplitFrom])
		}
		snap.zoneGroups[z] = zg
		if snap.zoneHooks[z], err = b.cloud.DescribeLifecycleHooks(ctx, zg.Name); err != nil {
			return nil, fmt.Errorf("describing lifecycle hooks of %s: %w", zg.Name, err)
		}
		for _, i := range zg.Instances {
			member[i.ID] = true
		}
	}
	// Instances of the batch in flight that are in no group were detached by
	// the run that crashed; attach them only if they still run.
	var loose []string
	if _, batch, ok := parseMove(snap.old.Tags[TagSplitState]); ok {
		for _, m := range batch {
			if !member[m.id] {
				loose = append(loose, m.id)
			}
		}
	}
	if len(loose) > 0 {
		insts, err := b.cloud.DescribeInstances(ctx, loose)
		if err != nil {
			return nil, err
		}
		for _, i := range insts {
			snap.running[i.ID] = i.State == "running"
		}
	}
	return snap, nil
}

type moved struct {
	id        string
	protected bool
}

func formatMove(zone string, batch []moved) string {
	var sb strings.Builder
	sb.WriteString(splitMove + " " + zone)
	for _, m := range batch {
		sb.WriteString(" " + m.id)
		if m.protected {
			sb.WriteString(protectedMark)
		}
	}
	return sb.String()
}

func parseMove(v string) (zone string, batch []moved, ok bool) {
	f := strings.Fields(v)
	if len(f) < 2 || f[0] != splitMove {
		return "", nil, false
	}
	for _, id := range f[2:] {
		m := moved{id: strings.TrimSuffix(id, protectedMark)}
		m.protected = m.id != id
		batch = append(batch, m)
	}
	return f[1], batch, true
}

type splitSizes struct{ min, max int32 }

func (s splitSizes) String() string { return fmt.Sprintf("min=%d,max=%d", s.min, s.max) }

func parseSizes(v string) (splitSizes, error) {
	var s splitSizes
	for _, kv := range strings.Split(v, ",") {
		k, val, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseInt(val, 10, 32)
		if err != nil {
			return s, fmt.Errorf("tag %s=%q: %w", TagSplitSizes, v, err)
		}
		switch k {
		case "min":
			s.min = int32(n)
		case "max":
			s.max = int32(n)
		default:
			return s, fmt.Errorf("tag %s=%q: unknown key %q", TagSplitSizes, v, k)
		}
	}
	return s, nil
}

// discoveryKeys are the tags by which cluster-autoscaler finds the group:
// the selector's keys, and k8s.io/cluster-autoscaler/<word> (enabled, the
// cluster name); node-template tags have a further slash and stay.
func discoveryKeys(tags map[string]string, sel aws.Selector) []string {
	var out []string
	for _, k := range sortedKeys(tags) {
		rest, ca := strings.CutPrefix(k, caTagPrefix)
		if slices.Contains(sel.TagKeys, k) || (ca && rest != "" && !strings.Contains(rest, "/")) {
			out = append(out, k)
		}
	}
	return out
}

func ceilDiv(a, b int32) int32 { return (a + b - 1) / b }

// splitSteps derives the remaining steps of a split from what AWS holds. It
// returns the instances that keep it from finishing (not InService).
func splitSteps(snap *splitSnapshot, sel aws.Selector) (steps []splitStep, blocked []string, err error) {
	old := &snap.old
	name := old.Name
	add := func(target, verb, detail string, do func(context.Context, SplitCloud) error) {
		steps = append(steps, splitStep{Action{Target: "asg/" + target, Verb: verb, Detail: detail}, do})
	}
	state := old.Tags[TagSplitState]
	if state == splitDone {
		keys := discoveryKeys(old.Tags, sel)
		if _, ok := old.Tags[TagSplitSizes]; ok {
			keys = append(keys, TagSplitSizes)
		}
		if len(keys) > 0 {
			add(name, "DeleteTags", strings.Join(keys, ","), func(ctx context.Context, c SplitCloud) error { return c.DeleteGroupTags(ctx, name, keys) })
		}
		return steps, nil, nil
	}
	if len(snap.zones) < 2 && state == "" {
		return nil, nil, fmt.Errorf("group %s spans %d zone(s); nothing to split", name, len(snap.zones))
	}

	// 1. Before any other write, keep AWS from replacing, removing or
	// rebalancing capacity of the group.
	var suspend []string
	for _, p := range suspendedForSplit {
		if !old.Suspended(p) {
			suspend = append(suspend, p)
		}
	}
	if len(suspend) > 0 {
		add(name, "SuspendProcesses", strings.Join(suspend, ","), func(ctx context.Context, c SplitCloud) error { return c.SuspendProcesses(ctx, name, suspend...) })
	}
	// 2. Record the original sizes, which the group is about to lose.
	sizes := splitSizes{old.MinSize, old.MaxSize}
	if v, ok := old.Tags[TagSplitSizes]; ok {
		if sizes, err = parseSizes(v); err != nil {
			return nil, nil, err
		}
	} else {
		tags := map[string]string{TagSplitSizes: sizes.String()}
		if state == "" {
			tags[TagSplitState] = splitStarted
		}
		var detail []string
		for _, k := range sortedKeys(tags) {
			detail = append(detail, k+"="+tags[k])
		}
		add(name, "CreateOrUpdateTags", strings.Join(detail, " "),
			func(ctx context.Context, c SplitCloud) error { return c.SetGroupTags(ctx, name, tags) })
	}

	// Detaching with a decrement may not go below the minimum size.
	if old.MinSize > 0 {
		add(name, "UpdateAutoScalingGroup", "min=0", func(ctx context.Context, c SplitCloud) error {
			return c.UpdateGroupSize(ctx, name, aws.Sizes{Min: ptr(int32(0))})
		})
	}

	// Where every instance is: the group, its zone's group, or in flight.
	inOld := map[string]*aws.GroupInstance{}
	count := map[string]int32{}
	for i := range old.Instances {
		inOld[old.Instances[i].ID] = &old.Instances[i]
		count[old.Instances[i].Zone]++
	}
	inZone := map[string]*aws.GroupInstance{}
	for z, zg := range snap.zoneGroups {
		for i := range zg.Instances {
			inZone[zg.Instances[i].ID] = &zg.Instances[i]
			count[z]++
		}
	}
	flightZone, flight, inFlight := parseMove(state)
	var loose []string // detached by a crashed run, still running
	for _, m := range flight {
		if inOld[m.id] == nil && inZone[m.id] == nil {
			if snap.running[m.id] { // else terminated by someone else while detached: nothing to move
				loose = append(loose, m.id)
				count[flightZone]++
			}
		}
	}

	n := int32(len(snap.zones))
	maxZ := func(z string) int32 { return max(ceilDiv(sizes.max, n), count[z]) }
	minZ := func(z string) int32 { return min(ceilDiv(sizes.min, n), count[z]) }

	// 3. One group per zone, hooked from the start; room for every instance.
	tags := map[string]string{TagSplitFrom: name}
	for k, v := range old.Tags {
		if k != TagSplitState && k != TagSplitSizes && !strings.HasPrefix(k, "aws:") {
			tags[k] = v
		}
	}
	for _, z := range snap.zones {
		zname := ZoneGroupName(name, z)
		zg := snap.zoneGroups[z]
		if zg == nil {
			spec := aws.ZoneGroup{Source: name, Name: zname, Zone: z, MaxSize: maxZ(z), Tags: tags, Hooks: snap.oldHooks}
			add(zname, "CreateAutoScalingGroup", fmt.Sprintf("zone=%s min=0 max=%d hooks=%d tags=%d", z, spec.MaxSize, len(spec.Hooks), len(tags)),
				func(ctx context.Context, c SplitCloud) error { return c.CreateZoneGroup(ctx, spec) })
			continue
		}
		for _, h := range snap.oldHooks {
			if !slices.ContainsFunc(snap.zoneHooks[z], func(x aws.Hook) bool {
				return x.Name == h.Name && x.Transition == h.Transition && x.HeartbeatTimeout == h.HeartbeatTimeout && x.DefaultResult == h.DefaultResult
			}) {
				h.Group = zname
				add(zname, "PutLifecycleHook", h.Name+" "+h.Transition, func(ctx context.Context, c SplitCloud) error { return c.PutLifecycleHook(ctx, h) })
			}
		}
		if m := maxZ(z); zg.MaxSize < m {
			add(zname, "UpdateAutoScalingGroup", fmt.Sprintf("max=%d", m), func(ctx context.Context, c SplitCloud) error {
				return c.UpdateGroupSize(ctx, zname, aws.Sizes{Max: ptr(m)})
			})
		}
	}

	// 4. Finish the batch a crashed run left in flight.
	move := func(z string, detach, attach []string, protect []string) {
		zname := ZoneGroupName(name, z)
		if len(detach) > 0 {
			add(name, "DetachInstances", strings.Join(detach, ","), func(ctx context.Context, c SplitCloud) error { return c.DetachInstances(ctx, name, detach) })
		}
		if len(attach) > 0 {
			add(zname, "AttachInstances", strings.Join(attach, ","), func(ctx context.Context, c SplitCloud) error { return c.AttachInstances(ctx, zname, attach) })
		}
		if len(protect) > 0 {
			add(zname, "SetInstanceProtection", "protected=true "+strings.Join(protect, ","), func(ctx context.Context, c SplitCloud) error {
				return c.SetInstanceProtection(ctx, zname, protect, true)
			})
		}
	}
	handled := map[string]bool{}
	if inFlight {
		var detach, attach, protect []string
		for _, m := range flight {
			handled[m.id] = true
			switch i := inOld[m.id]; {
			case i != nil && i.LifecycleState != "InService":
				continue // reported below
			case i != nil:
				detach = append(detach, m.id)
				attach = append(attach, m.id)
			case slices.Contains(loose, m.id):
				attach = append(attach, m.id)
			}
			if m.protected && (slices.Contains(attach, m.id) || (inZone[m.id] != nil && !inZone[m.id].ProtectedFromScaleIn)) {
				protect = append(protect, m.id)
			}
		}
		move(flightZone, detach, attach, protect)
	}

	// 5. Move the rest, zone by zone, in batches that fit in the state tag.
	for _, z := range snap.zones {
		var batch []moved
		flush := func() {
			if len(batch) == 0 {
				return
			}
			b := batch
			value := formatMove(z, b)
			add(name, "CreateOrUpdateTags", TagSplitState+"="+value, func(ctx context.Context, c SplitCloud) error {
				return c.SetGroupTags(ctx, name, map[string]string{TagSplitState: value})
			})
			var ids, protect []string
			for _, m := range b {
				ids = append(ids, m.id)
				if m.protected {
					protect = append(protect, m.id)
				}
			}
			move(z, ids, ids, protect)
			batch = nil
		}
		for _, i := range old.Instances {
			if i.Zone != z || (handled[i.ID] && i.LifecycleState == "InService") {
				continue
			}
			if i.LifecycleState != "InService" {
				blocked = append(blocked, fmt.Sprintf("instance %s is %s", i.ID, i.LifecycleState))
				continue
			}
			next := append(slices.Clone(batch), moved{i.ID, i.ProtectedFromScaleIn})
			if len(next) > aws.MaxMoveBatch || len(formatMove(z, next)) > maxTagValue {
				flush()
				next = []moved{{i.ID, i.ProtectedFromScaleIn}}
			}
			batch = next
		}
		flush()
	}
	if len(blocked) > 0 {
		return steps, blocked, nil
	}

	// 6. Per-zone minimums, now that the instances are there.
	for _, z := range snap.zones {
		zname := ZoneGroupName(name, z)
		have := int32(0)
		if zg := snap.zoneGroups[z]; zg != nil {
			have = zg.MinSize
		}
		if m := minZ(z); m != have {
			add(zname, "UpdateAutoScalingGroup", fmt.Sprintf("min=%d", m), func(ctx context.Context, c SplitCloud) error {
				return c.UpdateGroupSize(ctx, zname, aws.Sizes{Min: ptr(m)})
			})
		}
	}

	// 7. Empty the old group for good and let cluster-autoscaler forget it.
	if old.MinSize != 0 || old.MaxSize != 0 || old.DesiredCapacity != 0 {
		add(name, "UpdateAutoScalingGroup", "min=0 max=0 desired=0", func(ctx context.Context, c SplitCloud) error {
			return c.UpdateGroupSize(ctx, name, aws.Sizes{Min: ptr(int32(0)), Max: ptr(int32(0)), Desired: ptr(int32(0))})
		})
	}
	add(name, "CreateOrUpdateTags", TagSplitState+"="+splitDone, func(ctx context.Context, c SplitCloud) error {
		return c.SetGroupTags(ctx, name, map[string]string{TagSplitState: splitDone})
	})
	keys := append(discoveryKeys(old.Tags, sel), TagSplitSizes)
	add(name, "DeleteTags", strings.Join(keys, ","), func(ctx context.Context, c SplitCloud) error { return c.DeleteGroupTags(ctx, name, keys) })
	return steps, nil, nil
}

func ptr[T any](v T) *T { return &v }

// splitGroup runs a split from the loop and reports it; the caller holds b.mu.
func (b *Balancer) splitGroup(ctx context.Context, g *aws.Group, w *warnings) (changed bool, err error) {
	cloud, ok := b.cloud.(SplitCloud)
	if !ok {
		return false, errors.New("the AWS client cannot split groups")
	}
	done, err := b.split(ctx, cloud, g.Name)
	if len(done) > 0 {
		w.normal(ReasonSplitGroup, "Split Auto Scaling group %s (zones %v): %d steps made", g.Name, g.Zones, len(done))
	}
	if err != nil {
		w.warn(ReasonSplitBlocked, "Split of Auto Scaling group %s did not finish: %v", g.Name, err)
	}
	return len(done) > 0, err
}

// splitDoneGroup reports whether g is the empty remainder of a finished split.
func splitDoneGroup(g *aws.Group) bool { return g.Tags[TagSplitState] == splitDone }

func (r *recordingCloud) CreateZoneGroup(_ context.Context, zg aws.ZoneGroup) error {
	r.record(zg.Name, "CreateAutoScalingGroup", "from %s zone=%s min=%d max=%d", zg.Source, zg.Zone, zg.MinSize, zg.MaxSize)
	return nil
}

func (r *recordingCloud) UpdateGroupSize(_ context.Context, group string, s aws.Sizes) error {
	var parts []string
	for _, p := range []struct {
		k string
		v *int32
	}{{"min", s.Min}, {"max", s.Max}, {"desired", s.Desired}} {
		if p.v != nil {
			parts = append(parts, fmt.Sprintf("%s=%d", p.k, *p.v))
		}
	}
	r.record(group, "UpdateAutoScalingGroup", "%s", strings.Join(parts, " "))
	return nil
}

func (r *recordingCloud) DetachInstances(_ context.Context, group string, ids []string) error {
	r.record(group, "DetachInstances", "%s", strings.Join(ids, ","))
	return nil
}

func (r *recordingCloud) AttachInstances(_ context.Context, group string, ids []string) error {
	r.record(group, "AttachInstances", "%s", strings.Join(ids, ","))
	return nil
}

func (r *recordingCloud) SetGroupTags(_ context.Context, group string, tags map[string]string) error {
	var parts []string
	for _, k := range sortedKeys(tags) {
		parts = append(parts, k+"="+tags[k])
	}
	r.record(group, "CreateOrUpdateTags", "%s", strings.Join(parts, " "))
	return nil
}

func (r *recordingCloud) DeleteGroupTags(_ context.Context, group string, keys []string) error {
	r.record(group, "DeleteTags", "%s", strings.Join(keys, ","))
	return nil
}
