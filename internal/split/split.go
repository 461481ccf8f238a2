// Package split splits a multi-zone Auto Scaling group G into one group per
// zone (DESIGN "One ASG per zone"), moving its instances without terminating
// any.
//
// For every zone z of G it creates the group G-z from G's launch template or
// mixed instances policy, tags (cluster-autoscaler's discovery and
// node-template tags included) and lifecycle hooks, then moves G's instances
// there with DetachInstances (decrementing G's desired capacity) and
// AttachInstances, and sets the scale-in protection again where an instance
// had it (AWS drops it on detach). G is left empty, min=max=desired=0,
// without its discovery tags so that cluster-autoscaler forgets it, and with
// Launch, Terminate and AZRebalance suspended; it is not deleted.
//
// Sizes, with n zones and G's original min and max:
//
//	max(G-z) = max(ceil(max/n), instances in z)  the zone's share of max, raised so every instance fits
//	min(G-z) = min(ceil(min/n), instances in z)  the zone's share of min, never more than it runs
//	                                             (InService or Pending, within its desired capacity),
//	                                             so setting it launches nothing (0 in an empty zone)
//
// A split is a sequence of passes; each pass reads AWS and makes the steps
// that are due, so a split resumes from any crash. Progress lives in AWS
// only: the tag TagState on G says "started", "move <zone> <id>[*] ..." (the
// batch in flight, * marking instances that were protected) or "done";
// TagSizes keeps G's original min and max; the per-zone groups carry TagFrom.
//
// Detaching is asynchronous in AWS: an instance stays in G as Detaching (for
// the deregistration delay of G's target groups, 300 s by default) before it
// can be attached elsewhere. So one batch is in flight at a time, and it stays
// recorded until every instance of it is attached to its zone's group (or no
// longer runs): a pass that finds one still detaching waits, and the next
// batch is recorded only after. No instance is ever detached without its
// batch being on record.
//
// Two splitters never run passes over the same group at once: see lock.go.
package split

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/smithy-go"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/ballast-k8s/ballast/internal/asg"
)

const (
	// TagState records the progress of a split on the split group.
	TagState = "ballast.k8s.io/split-state"
	// TagSizes records the split group's original min and max.
	TagSizes = "ballast.k8s.io/split-sizes"
	// TagFrom names, on a per-zone group, the group it was split from.
	TagFrom = "ballast.k8s.io/split-from"
	// TagRecordPrefix + <instance> records, on the split group, an instance
	// of a batch and its zone ("<zone>[*]"), written in the same
	// CreateOrUpdateTags call as the batch's TagState. CreateOrUpdateTags
	// has no condition, so a record that lands late (after the lock lapsed
	// and another splitter recorded and detached its own batch) overwrites
	// TagState; these keys are not overwritten by another batch, and a pass
	// takes a recorded instance that is detaching or detached, but on no
	// TagState, back on record. They are deleted once the instance is in a
	// per-zone group or terminated.
	TagRecordPrefix = TagState + "/"
	// TagImages lists the AMIs whose deregistration protection the split
	// enables for the batch in flight, written before it enables it; it
	// disables it once the batch is attached, unless another group's split
	// records the same AMI in its own TagImages (then that split lifts it).
	// An AMI deregistered while its instance is detached would leave the
	// instance attachable to no group.
	TagImages = "ballast.k8s.io/split-images"

	// StateDone is TagState of a finished split.
	StateDone = "done"

	stateStarted  = "started"
	stateMove     = "move"
	maxTagValue   = 256 // Auto Scaling tag values
	maxGroupTags  = 50  // Auto Scaling tags per group (service quota)
	maxGroupName  = 255 // Auto Scaling group names (API_CreateAutoScalingGroup)
	caTagPrefix   = "k8s.io/cluster-autoscaler/"
	protectedMark = "*"
)

// suspended keep AWS from replacing or removing capacity of the group being
// emptied: no launch to replace a detached instance, no termination, no
// rebalancing towards the zones already moved.
var suspended = []string{asg.ProcessAZRebalance, "Launch", "Terminate"}

// Cloud is what splitting needs of AWS; *asg.Client implements it.
type Cloud interface {
	DescribeGroups(ctx context.Context, sel asg.Selector) ([]asg.Group, error)
	DescribeInstances(ctx context.Context, ids []string) ([]asg.Instance, error)
	DescribeAutoScalingInstances(ctx context.Context, ids []string) ([]asg.GroupMember, error)
	DescribeLifecycleHooks(ctx context.Context, group string) ([]asg.Hook, error)
	ImagesAvailable(ctx context.Context, ids []string) (map[string]bool, error)
	OwnedImages(ctx context.Context, ids []string) (map[string]bool, error)
	SetImageProtection(ctx context.Context, id string, on bool) error

	SuspendProcesses(ctx context.Context, group string, processes ...string) error
	SetInstanceProtection(ctx context.Context, group string, ids []string, protected bool) error
	PutLifecycleHook(ctx context.Context, h asg.Hook) error
	CreateZoneGroup(ctx context.Context, zg asg.ZoneGroup) error
	UpdateGroupSize(ctx context.Context, group string, s asg.Sizes) error
	DetachInstances(ctx context.Context, group string, ids []string) error
	AttachInstances(ctx context.Context, group string, ids []string) error
	SetGroupTags(ctx context.Context, group string, tags map[string]string) error
	ClaimGroupTag(ctx context.Context, group, key, value string) error
	DeleteGroupTags(ctx context.Context, group string, keys []string) error
}

var _ Cloud = (*asg.Client)(nil)

// ErrRefused wraps the refusal to split a group as it stands (no such
// group, a group in one zone, no room for the split's tags, a malformed
// split-sizes tag, a group named like a per-zone group that the split did
// not create, a lifecycle hook AWS refused to put on a per-zone group):
// bad input that no pass changes until the operator does. A pass refused
// before the split began writes nothing; once it has begun, the batch in
// flight is finished first, and the refusal comes before the next batch.
var ErrRefused = errors.New("not splitting")

// ZoneGroupName is the name of the group of zone split from group.
func ZoneGroupName(group, zone string) string { return group + "-" + zone }

// IsDone reports whether g is the empty remainder of a finished split.
func IsDone(g *asg.Group) bool { return g.Tags[TagState] == StateDone }

// Step is one AWS write of a split.
type Step struct {
	Target string // "asg/<name>"
	Verb   string // the Auto Scaling action
	Detail string
	// Warning is set when AWS refused the step and the split went on
	// without it (a per-zone group's hook, see step 3): it is reported,
	// and is no progress.
	Warning string
}

// warning is the error of a step that AWS refused and the split goes on
// without: run reports it and makes the next steps.
type warning struct{ err error }

func (w *warning) Error() string { return w.err.Error() }
func (w *warning) Unwrap() error { return w.err }

// Result is what one pass did or would do.
type Result struct {
	Steps []Step
	// Waiting says what keeps the split from finishing now (instances
	// detaching or not InService, the lock settling); run another pass later.
	Waiting []string
	// Done is set once the split is finished.
	Done bool
	// Stranded are instances the split leaves in the group and reports,
	// because AttachInstances would refuse them (their AMI is gone, or AWS
	// refused them once): "<id>: <why>". The split does not finish while
	// they are there; replace them (drain the node, terminate the instance).
	Stranded []string
}

// Options configure a Splitter.
type Options struct {
	// Selector is how the group is discovered; its tag keys are removed
	// from the emptied group along with cluster-autoscaler's.
	Selector asg.Selector
	// Owner names this splitter in the lock; unique per process.
	Owner string
	// LockDuration and LockSettle default to DefaultLockDuration and DefaultLockSettle.
	LockDuration, LockSettle time.Duration
	// Hook, if set, is the caller's own lifecycle hook (the balancer's
	// termination hook) with its current settings: the per-zone groups get
	// it in place of the split group's hook of the same name, whose settings
	// may be older (a HeartbeatTimeout from before an upgrade). Every other
	// hook is copied as the split group has it.
	Hook *asg.Hook
}

// Splitter splits groups, one pass at a time.
type Splitter struct {
	cloud Cloud
	clock clock.PassiveClock
	opts  Options
	void  voidClaims
}

// New builds a Splitter. Keep it for as long as the process runs passes
// under its owner: it remembers the lock claims it must not rely on.
func New(cloud Cloud, clk clock.PassiveClock, opts Options) *Splitter {
	if opts.LockDuration <= 0 {
		opts.LockDuration = DefaultLockDuration
	}
	if opts.LockSettle <= 0 {
		opts.LockSettle = DefaultLockSettle
	}
	opts.Owner = ownerName(opts.Owner)
	return &Splitter{cloud: cloud, clock: clk, opts: opts}
}

// step is a Step and the call that makes it.
type step struct {
	Step
	do func(context.Context, Cloud) error
	// guarded steps move instances or record a batch: the lock is read
	// again right before them (lock.go).
	guarded bool
	// setsState is the state tag the step writes, if it writes one.
	setsState *string
}

// guardKey carries a pass's re-check of its lock to the steps that make
// more than one guarded write.
type guardKey struct{}

// recheck reads the lock again if the pass holds one (see guard).
func recheck(ctx context.Context) error {
	if g, ok := ctx.Value(guardKey{}).(func(context.Context) error); ok {
		return g(ctx)
	}
	return nil
}

// Pass makes the steps of the split of group that are due now. Run it again
// while the result is not Done: after a failure it carries on where the last
// pass stopped. It returns an error wrapping ErrLocked when another splitter
// holds the group.
func (s *Splitter) Pass(ctx context.Context, group string) (Result, error) {
	logger := klog.FromContext(ctx).WithValues("group", group)
	snap, err := s.snapshot(ctx, group)
	if err != nil {
		return Result{}, err
	}
	for _, id := range sortedKeys(snap.ec2State) {
		if gone(snap.ec2State[id]) {
			logger.Info("Warning: an instance of the split's batch in flight was terminated; nothing to move", "instance", id)
		}
	}
	for _, k := range sortedKeys(snap.badRecords) {
		logger.Info("Warning: ignoring and deleting a malformed per-instance split record", "tag", k, "reason", snap.badRecords[k])
	}
	for _, zg := range snap.untagged {
		logger.Info("Warning: a per-zone group lost its split-from tag; it holds instances of the batch in flight, so it is still taken as the split's", "zoneGroup", zg, "tag", TagFrom)
	}
	for _, id := range sortedKeys(snap.elsewhere) {
		logger.Info("Warning: ignoring and deleting a per-instance split record of an instance of another group", "instance", id, "memberOf", snap.elsewhere[id])
	}
	plan, err := steps(snap, s.opts.Selector)
	if err != nil {
		return Result{}, err
	}
	var res Result
	var g *guard
	if !IsDone(&snap.old) {
		pre, held, err := s.lock(snap)
		if err != nil {
			return Result{}, err
		}
		if !held.ok {
			return s.run(ctx, group, pre, nil, Result{Waiting: []string{held.why}})
		}
		plan.steps = append(pre, plan.steps...)
		g = &guard{since: held.since, until: held.until, state: snap.old.Tags[TagState]}
	}
	res.Waiting, res.Done, res.Stranded = plan.waiting, plan.done, plan.stranded
	return s.run(ctx, group, plan.steps, g, res)
}

// guard is what a pass that holds the lock checks before its steps: the
// lock it holds (since, until) and the state tag it expects.
type guard struct {
	since, until time.Time
	state        string
}

// check reads the group's tags again and fails unless the lock is still
// this pass's claim and the state tag is what the pass expects.
func (s *Splitter) check(ctx context.Context, group string, g *guard) error {
	gs, err := s.cloud.DescribeGroups(ctx, asg.Selector{Names: []string{group}})
	if err != nil {
		return fmt.Errorf("reading the split lock again: %w", err)
	}
	if len(gs) == 0 {
		return fmt.Errorf("auto scaling group %s not found", group)
	}
	v := gs[0].Tags[TagLock]
	l, err := parseLock(v)
	if err != nil || l.owner != s.opts.Owner || !l.since.Equal(g.since) || s.void.has(v) {
		return fmt.Errorf("%w: the split lock of %s changed during the pass (now %q); stopped", ErrLocked, group, v)
	}
	if st := gs[0].Tags[TagState]; st != g.state {
		return fmt.Errorf("%w: the split state of %s changed during the pass (%q, expected %q); stopped", ErrLocked, group, st, g.state)
	}
	return nil
}

// run makes the steps in order and stops at the first failure, or before a
// step when the lock held (if g is set) is about to run out or is no longer
// this pass's.
func (s *Splitter) run(ctx context.Context, group string, todo []step, g *guard, res Result) (Result, error) {
	logger := klog.FromContext(ctx).WithValues("group", group)
	if g != nil {
		ctx = context.WithValue(ctx, guardKey{}, func(ctx context.Context) error { return s.check(ctx, group, g) })
	}
	for _, st := range todo {
		if g != nil && !s.clock.Now().Before(g.until.Add(-s.opts.LockSettle)) {
			res.Done = false
			return res, fmt.Errorf("splitting %s: the split lock runs out at %s; stopped before %s %s", group, g.until.UTC().Format(time.RFC3339), st.Target, st.Verb)
		}
		if g != nil && st.guarded {
			if err := s.check(ctx, group, g); err != nil {
				res.Done = false
				return res, fmt.Errorf("splitting %s: before %s %s: %w", group, st.Target, st.Verb, err)
			}
		}
		if err := s.do(ctx, st, g); err != nil {
			if w := (*warning)(nil); errors.As(err, &w) {
				logger.Info("Warning: AWS refused a split step; the split goes on without it", "target", st.Target, "action", st.Verb, "detail", st.Detail, "err", w.err)
				st.Step.Warning = w.Error()
				res.Steps = append(res.Steps, st.Step)
				continue
			}
			res.Done = false
			return res, fmt.Errorf("splitting %s: %s %s %s: %w", group, st.Target, st.Verb, st.Detail, err)
		}
		if g != nil && st.setsState != nil {
			g.state = *st.setsState
		}
		logger.Info("Split step", "target", st.Target, "action", st.Verb, "detail", st.Detail)
		res.Steps = append(res.Steps, st.Step)
	}
	return res, nil
}

// do makes one step. A guarded step's writes are sent once each, without
// the SDK's retries, and by a deadline before the lock the pass holds stops
// being relied on (until - Settle): none is sent after it.
func (s *Splitter) do(ctx context.Context, st step, g *guard) error {
	if g == nil || !st.guarded {
		return st.do(ctx, s.cloud)
	}
	cctx, cancel := context.WithTimeout(asg.SingleAttempt(ctx), g.until.Add(-s.opts.LockSettle).Sub(s.clock.Now()))
	defer cancel()
	return st.do(cctx, s.cloud)
}

// Plan returns the steps the next pass would make, as if it held the lock,
// without making any. A lock held by another splitter is reported in Waiting.
func (s *Splitter) Plan(ctx context.Context, group string) (Result, error) {
	snap, err := s.snapshot(ctx, group)
	if err != nil {
		return Result{}, err
	}
	plan, err := steps(snap, s.opts.Selector)
	if err != nil {
		return Result{}, err
	}
	res := Result{Waiting: plan.waiting, Done: plan.done && len(plan.steps) == 0, Stranded: plan.stranded}
	if l, err := parseLock(snap.old.Tags[TagLock]); err == nil && (l.owner != s.opts.Owner || s.void.has(snap.old.Tags[TagLock])) && s.clock.Now().Before(l.until) && !plan.done {
		res.Waiting = append(res.Waiting, lockedErr(group, l).Error())
	}
	for _, st := range plan.steps {
		res.Steps = append(res.Steps, st.Step)
	}
	return res, nil
}

// Release removes the lock of group if this splitter holds it, so that
// another can carry on at once.
func (s *Splitter) Release(ctx context.Context, group string) error {
	gs, err := s.cloud.DescribeGroups(ctx, asg.Selector{Names: []string{group}})
	if err != nil || len(gs) == 0 {
		return err
	}
	if l, err := parseLock(gs[0].Tags[TagLock]); err == nil && l.owner == s.opts.Owner {
		return s.cloud.DeleteGroupTags(ctx, group, []string{TagLock})
	}
	return nil
}

// holding says whether a pass holds the lock: until when, or why not.
type holding struct {
	ok           bool
	since, until time.Time
	why          string
}

// lock returns the steps that keep or take the lock, and whether this pass
// holds it; it fails with ErrLocked when another splitter does.
func (s *Splitter) lock(snap *snapshot) (pre []step, h holding, err error) {
	name, now := snap.old.Name, s.clock.Now()
	bound := s.opts.LockSettle / 3
	claim := func(l lock) step {
		v := l.String()
		return step{Step: Step{Target: "asg/" + name, Verb: "CreateOrUpdateTags", Detail: TagLock + "=" + v}, do: func(ctx context.Context, c Cloud) error {
			cctx, cancel := context.WithTimeout(ctx, bound)
			defer cancel()
			err := c.ClaimGroupTag(cctx, name, TagLock, v)
			if took := s.clock.Since(now); err != nil || took > bound {
				// It may have landed, late: never rely on it, let it lapse.
				s.void.add(v)
				if err == nil {
					err = fmt.Errorf("the write returned %s after it was decided, later than %s", took, bound)
				}
				return fmt.Errorf("claim of the split lock is void, it lapses by %s: %w", l.until.UTC().Format(time.RFC3339), err)
			}
			return nil
		}}
	}
	v, ok := snap.old.Tags[TagLock]
	cur, perr := parseLock(v)
	switch {
	case ok && perr == nil && (cur.owner != s.opts.Owner || s.void.has(v)) && now.Before(cur.until):
		return nil, h, lockedErr(name, cur)
	case !ok || perr != nil || !now.Before(cur.until): // free, malformed or expired: claim it
		l := lock{owner: s.opts.Owner, since: now, until: now.Add(s.opts.LockDuration)}
		h.why = fmt.Sprintf("claimed the split lock; the split proceeds from %s if no other splitter claimed it since", l.since.Add(s.opts.LockSettle).UTC().Format(time.RFC3339))
		return []step{claim(l)}, h, nil
	case now.Before(cur.since.Add(s.opts.LockSettle)): // ours, settling
		h.why = fmt.Sprintf("the split lock settles until %s", cur.since.Add(s.opts.LockSettle).UTC().Format(time.RFC3339))
		return nil, h, nil
	case cur.until.Sub(now) < s.opts.LockDuration/2: // ours: renew
		cur.until = now.Add(s.opts.LockDuration)
		pre = []step{claim(cur)}
	}
	return pre, holding{ok: true, since: cur.since, until: cur.until}, nil
}

// snapshot is what a pass reads from AWS before deciding its steps.
type snapshot struct {
	old        asg.Group
	oldHooks   []asg.Hook
	zones      []string
	zoneGroups map[string]*asg.Group // by zone, the per-zone groups that exist
	zoneHooks  map[string][]asg.Hook
	ec2State   map[string]string // instances of the batch in flight found in no group: their EC2 state, "" if unknown
	// unmovable are InService instances of the group that AttachInstances
	// would refuse, and why: their AMI is gone, or EC2 does not say.
	unmovable map[string]string
	// elsewhere are the instances of per-instance records that are members
	// of a group other than the split's: not the split's to move.
	elsewhere map[string]string
	// unprotected are the AMIs TagImages records that have no
	// deregistration protection (now).
	unprotected []string
	// badRecords are the keys of per-instance records that name no instance
	// ID, and why: they are reported and deleted, never put on the state tag.
	badRecords map[string]string
	// foreign are, by zone, the groups named like a per-zone group that
	// the split neither tagged (TagFrom) nor recorded: steps refuses them,
	// at once before the split begins, after the batch in flight once it has.
	foreign map[string]*asg.Group
	// untagged are the per-zone groups without their TagFrom that hold an
	// instance of the batch in flight (TagState): taken as the split's.
	untagged []string
}

// instanceIDPattern is the form of an EC2 instance ID.
var instanceIDPattern = regexp.MustCompile(`^i-[0-9a-f]{8}([0-9a-f]{9})?$`)

// zonePattern is the form of an Availability Zone name (us-east-1a,
// us-west-2-lax-1a): a zone read from the split's records is looked for
// only if it has it.
var zonePattern = regexp.MustCompile(`^[a-z]{2}(-[a-z0-9]+)+$`)

func (s *Splitter) snapshot(ctx context.Context, group string) (*snapshot, error) {
	groups, err := s.cloud.DescribeGroups(ctx, asg.Selector{Names: []string{group}})
	if err != nil {
		return nil, err
	}
	if len(groups) == 0 {
		return nil, fmt.Errorf("%w: auto scaling group %s not found", ErrRefused, group)
	}
	snap := &snapshot{old: groups[0], zones: slices.Sorted(slices.Values(groups[0].Zones)),
		zoneGroups: map[string]*asg.Group{}, foreign: map[string]*asg.Group{}, zoneHooks: map[string][]asg.Hook{}, ec2State: map[string]string{}, unmovable: map[string]string{},
		elsewhere: map[string]string{}, badRecords: map[string]string{}}
	if IsDone(&snap.old) {
		return snap, nil
	}
	if snap.oldHooks, err = s.cloud.DescribeLifecycleHooks(ctx, group); err != nil {
		return nil, fmt.Errorf("describing lifecycle hooks of %s: %w", group, err)
	}
	if own := s.opts.Hook; own != nil {
		for i := range snap.oldHooks {
			if h := snap.oldHooks[i]; h.Name == own.Name {
				snap.oldHooks[i] = *own
				snap.oldHooks[i].Group = group
				// Its notification target, if the group's has one, still
				// goes with it.
				if own.NotificationTargetARN == "" {
					snap.oldHooks[i].NotificationTargetARN, snap.oldHooks[i].RoleARN, snap.oldHooks[i].NotificationMetadata = h.NotificationTargetARN, h.RoleARN, h.NotificationMetadata
				}
			}
		}
	}
	// What the split recorded: the zones of the batch in flight and of the
	// per-instance records (their groups are described, see below), and the
	// instances of the batch in flight named in TagState. An untagged group
	// holding such an instance is the split's even without its TagFrom
	// (pruned by a tool that manages the group's tags, or by hand): only the
	// split attaches the instances of its batch in flight. A per-instance
	// record never makes a group the split's: a stale record may name an
	// instance of another group, named like a per-zone group.
	recZones, flightIDs := map[string]bool{}, map[string]bool{}
	if z, batch, ok := parseMove(snap.old.Tags[TagState]); ok {
		recZones[z] = true
		for _, m := range batch {
			flightIDs[m.id] = true
		}
	}
	for _, v := range records(snap.old.Tags) {
		z, _ := strings.CutSuffix(v, protectedMark)
		recZones[z] = true
	}
	// The per-zone groups of the group's zones, and those of the zones the
	// records name: a zone dropped from the group while its batch was in
	// flight still has its batch there to finish (attached, protected
	// again, its records deleted).
	names := make([]string, 0, len(snap.zones))
	for _, z := range snap.zones {
		names = append(names, ZoneGroupName(group, z))
	}
	for _, z := range sortedKeys(recZones) {
		if zname := ZoneGroupName(group, z); !slices.Contains(snap.zones, z) && zonePattern.MatchString(z) && len(zname) <= maxGroupName {
			names = append(names, zname)
		}
	}
	zgs, err := s.cloud.DescribeGroups(ctx, asg.Selector{Names: names})
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
		if zg.Tags[TagFrom] != group {
			if !slices.ContainsFunc(zg.Instances, func(i asg.GroupInstance) bool { return flightIDs[i.ID] }) {
				snap.foreign[z] = zg
				continue
			}
			snap.untagged = append(snap.untagged, zg.Name)
		}
		snap.zoneGroups[z] = zg
		if slices.Contains(snap.zones, z) { // a dropped zone's group gets no hook (step 3)
			if snap.zoneHooks[z], err = s.cloud.DescribeLifecycleHooks(ctx, zg.Name); err != nil {
				return nil, fmt.Errorf("describing lifecycle hooks of %s: %w", zg.Name, err)
			}
		}
		for _, i := range zg.Instances {
			member[i.ID] = true
		}
	}
	// Instances of the batch in flight that are in no group are detached:
	// attach them if they still run.
	var loose []string
	inFlight := map[string]bool{}
	if _, batch, ok := parseMove(snap.old.Tags[TagState]); ok {
		for _, m := range batch {
			inFlight[m.id] = true
			if !member[m.id] {
				loose = append(loose, m.id)
			}
		}
	}
	var recorded []string
	for _, id := range sortedKeys(records(snap.old.Tags)) {
		if !instanceIDPattern.MatchString(id) {
			snap.badRecords[TagRecordPrefix+id] = fmt.Sprintf("%q is not an EC2 instance ID", id)
			continue
		}
		if !member[id] && !inFlight[id] {
			loose = append(loose, id)
			recorded = append(recorded, id)
		}
	}
	if err := s.checkImages(ctx, snap, inFlight); err != nil {
		return nil, err
	}
	if amis := strings.Fields(snap.old.Tags[TagImages]); len(amis) > 0 && len(inFlight) > 0 {
		owned, err := s.cloud.OwnedImages(ctx, amis)
		if err != nil {
			return nil, fmt.Errorf("describing the AMIs recorded in %s: %w", TagImages, err)
		}
		for _, ami := range amis {
			if on, ok := owned[ami]; ok && !on {
				snap.unprotected = append(snap.unprotected, ami)
			}
		}
	}
	if len(recorded) > 0 {
		// A recorded instance in no group of the split may be in another
		// (DescribeAutoScalingInstances answers for any group).
		ms, err := s.cloud.DescribeAutoScalingInstances(ctx, recorded)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			// Only the split's per-zone groups are the split's: another
			// group may be named "<group>-something" too, or like a
			// per-zone group (foreign).
			if slices.Contains(recorded, m.ID) && m.Group != group && !slices.ContainsFunc(sortedKeys(snap.zoneGroups), func(z string) bool { return snap.zoneGroups[z].Name == m.Group }) {
				snap.elsewhere[m.ID] = m.Group
			}
		}
	}
	if len(loose) > 0 {
		insts, err := s.cloud.DescribeInstances(ctx, loose)
		if err != nil {
			return nil, err
		}
		for _, id := range loose {
			snap.ec2State[id] = ""
		}
		for _, i := range insts {
			snap.ec2State[i.ID] = i.State
		}
	}
	return snap, nil
}

// checkImages finds the InService instances of the group, those of a batch
// on record but not yet detached included, that AttachInstances would
// refuse once detached: the user guide (ec2-auto-scaling-detach-attach-
// instances) says "The AMI used to launch the instance must still exist."
// Detaching cannot be undone, so this is asked before any instance is
// detached (and again right before DetachInstances, see imagesGone).
func (s *Splitter) checkImages(ctx context.Context, snap *snapshot, _ map[string]bool) error {
	var ids []string
	for _, i := range snap.old.Instances {
		if i.LifecycleState == asg.StateInService {
			ids = append(ids, i.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	return unmovable(ctx, s.cloud, ids, snap.unmovable)
}

// unmovable records in out, of the instances ids, those AttachInstances
// would refuse, and why.
func unmovable(ctx context.Context, c Cloud, ids []string, out map[string]string) error {
	insts, err := c.DescribeInstances(ctx, ids)
	if err != nil {
		return err
	}
	ami := map[string]string{}
	var images []string
	for _, i := range insts {
		ami[i.ID] = i.ImageID
		if i.ImageID != "" {
			images = append(images, i.ImageID)
		}
	}
	slices.Sort(images)
	available := map[string]bool{}
	if images = slices.Compact(images); len(images) > 0 {
		if available, err = c.ImagesAvailable(ctx, images); err != nil {
			return err
		}
	}
	for _, id := range ids {
		switch im, ok := ami[id]; {
		case !ok:
			out[id] = "unknown to EC2"
		case im == "":
			out[id] = "EC2 names no AMI for it"
		case !available[im]:
			out[id] = fmt.Sprintf("its AMI %s no longer exists, and AttachInstances refuses such an instance", im)
		}
	}
	return nil
}

type moved struct {
	id        string
	protected bool
	// back marks an instance that AttachInstances refused for its zone's
	// group: it goes back to the split group, and stays there.
	back bool
}

// records returns the per-instance records (TagRecordPrefix) among tags, by instance.
func records(tags map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range tags {
		if id, ok := strings.CutPrefix(k, TagRecordPrefix); ok {
			out[id] = v
		}
	}
	return out
}

// recordKeys returns the keys of the per-instance records among tags.
func recordKeys(tags map[string]string) []string {
	var out []string
	for _, k := range sortedKeys(tags) {
		if strings.HasPrefix(k, TagRecordPrefix) {
			out = append(out, k)
		}
	}
	return out
}

// backMark follows an instance of the batch that goes back to the split group.
const backMark = "!"

func formatMove(zone string, batch []moved) string {
	var sb strings.Builder
	sb.WriteString(stateMove + " " + zone)
	for _, m := range batch {
		sb.WriteString(" " + m.id)
		if m.protected {
			sb.WriteString(protectedMark)
		}
		if m.back {
			sb.WriteString(backMark)
		}
	}
	return sb.String()
}

func parseMove(v string) (zone string, batch []moved, ok bool) {
	f := strings.Fields(v)
	if len(f) < 2 || f[0] != stateMove {
		return "", nil, false
	}
	for _, id := range f[2:] {
		var m moved
		id, m.back = strings.CutSuffix(id, backMark)
		m.id, m.protected = strings.CutSuffix(id, protectedMark)
		batch = append(batch, m)
	}
	return f[1], batch, true
}

type sizes struct{ min, max int32 }

func (s sizes) String() string { return fmt.Sprintf("min=%d,max=%d", s.min, s.max) }

func parseSizes(v string) (sizes, error) {
	var s sizes
	for _, kv := range strings.Split(v, ",") {
		k, val, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseInt(val, 10, 32)
		if err != nil {
			return s, fmt.Errorf("tag %s=%q: %w", TagSizes, v, err)
		}
		switch k {
		case "min":
			s.min = int32(n)
		case "max":
			s.max = int32(n)
		default:
			return s, fmt.Errorf("tag %s=%q: unknown key %q", TagSizes, v, k)
		}
	}
	return s, nil
}

// discoveryKeys are the tags by which cluster-autoscaler finds the group:
// the selector's keys, and k8s.io/cluster-autoscaler/<word> (enabled, the
// cluster name); node-template tags have a further slash and stay.
func discoveryKeys(tags map[string]string, sel asg.Selector) []string {
	var out []string
	for _, k := range sortedKeys(tags) {
		rest, ca := strings.CutPrefix(k, caTagPrefix)
		if slices.Contains(sel.TagKeys, k) || (ca && rest != "" && !strings.Contains(rest, "/")) {
			out = append(out, k)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func ceilDiv(a, b int32) int32 { return (a + b - 1) / b }

// gone reports whether an EC2 state means the instance will never run again.
func gone(state string) bool { return state == "terminated" || state == "shutting-down" }

// plan is the outcome of steps.
type plan struct {
	steps    []step
	waiting  []string
	stranded []string
	done     bool // the split is finished, or finishes with these steps
}

// steps derives the steps of the next pass from what AWS holds.
func steps(snap *snapshot, sel asg.Selector) (p plan, err error) {
	old := &snap.old
	name := old.Name
	add := func(target, verb, detail string, do func(context.Context, Cloud) error) *step {
		p.steps = append(p.steps, step{Step: Step{Target: "asg/" + target, Verb: verb, Detail: detail}, do: do})
		return &p.steps[len(p.steps)-1]
	}
	// guarded: the step moves instances or writes the state tag (lock.go).
	guarded := func(st *step, state *string) { st.guarded, st.setsState = true, state }
	state := old.Tags[TagState]
	if state == StateDone {
		keys := discoveryKeys(old.Tags, sel)
		for _, k := range []string{TagSizes, TagLock} {
			if _, ok := old.Tags[k]; ok {
				keys = append(keys, k)
			}
		}
		keys = append(keys, recordKeys(old.Tags)...)
		if len(keys) > 0 {
			add(name, "DeleteTags", strings.Join(keys, ","), func(ctx context.Context, c Cloud) error { return c.DeleteGroupTags(ctx, name, keys) })
		}
		p.done = true
		return p, nil
	}
	if len(snap.zones) < 2 && state == "" {
		return p, fmt.Errorf("%w: group %s spans %d zone(s); nothing to split", ErrRefused, name, len(snap.zones))
	}
	// refuse is a refusal that, once the split has begun, waits for the
	// batch in flight to be attached: a split-sizes tag edited mid-split,
	// a group named like a per-zone group that is not the split's.
	// Begun: a state, or a per-instance record of an instance detached on
	// a state another write overwrote (step 4b).
	//
	// Lifecycle hooks are no reason to refuse: the per-zone groups copy
	// every hook of the group, launch hooks whatever their default result
	// included, and an attached instance goes through none of them (user
	// guide, lifecycle-hooks, "Lifecycle hook availability", footnote 1:
	// the launch and termination hooks do not apply "when you attach or
	// detach instances").
	var refuse error
	begun := state != "" || len(recordKeys(old.Tags)) > 0
	hooks := snap.oldHooks
	// A group named like a per-zone group that the split neither tagged nor
	// recorded: the split cannot create its own under that name. Once the
	// split has begun, it is most likely the split's own whose TagFrom was
	// removed after its batches were finished; it is left alone (nothing is
	// created, attached or changed there) and the split stops before its
	// next batch. Never deleted, nor advised to be: it may hold moved
	// instances, which deleting the group would terminate.
	if zs := sortedKeys(snap.foreign); len(zs) > 0 {
		z, fg := zs[0], snap.foreign[zs[0]]
		refuse = fmt.Errorf("%w: group %s exists but was not split from %s (tag %s=%q), and the split records nothing of its own there: the split would create its per-zone group for zone %s under that name. If the split created it and the tag was removed, tag it %s=%s again",
			ErrRefused, fg.Name, name, TagFrom, fg.Tags[TagFrom], z, TagFrom, name)
	}
	if refuse != nil && !begun {
		return p, refuse
	}

	// A per-zone group's name must fit, before the first write: a split
	// that cannot create its per-zone groups would suspend Launch and
	// Terminate and zero the minimum, then fail at step 3 on every pass
	// (API_CreateAutoScalingGroup, AutoScalingGroupName: "Maximum length
	// of 255.").
	for _, z := range snap.zones {
		if zname := ZoneGroupName(name, z); snap.zoneGroups[z] == nil && len(zname) > maxGroupName {
			return p, fmt.Errorf("%w: the per-zone group of %s for zone %s would be named with %d characters, and Auto Scaling group names have at most %d (the group's name leaves no room for \"-%s\"); give the group a shorter name first",
				ErrRefused, name, z, len(zname), maxGroupName, z)
		}
	}

	// Room for one per-instance record at least, before the first write:
	// a split that cannot record a single instance would suspend Launch
	// and Terminate, zero the minimum and create the per-zone groups, then
	// wait for ever (at most 50 tags per group; CreateOrUpdateTags fails
	// with LimitExceeded over it).
	if state == "" {
		if room := recordRoom(old.Tags, TagLock); room < 1 {
			return p, fmt.Errorf("%w: group %s has %d tags, and a split needs %d more of its own (%s, %s, %s, %s) plus one per instance moved at a time, at most %d per group; remove at least %d tag(s) of the group first",
				ErrRefused, name, len(old.Tags), missing(old.Tags, TagLock, TagState, TagSizes, TagImages), TagLock, TagState, TagSizes, TagImages, maxGroupTags, 1-room)
		}
	}

	// 1. Before any other write, keep AWS from replacing, removing or
	// rebalancing capacity of the group. (Before the split has begun,
	// AZRebalance is suspended first, then the per-zone groups of step 3
	// are created, then Launch and Terminate suspended: see below.)
	first := len(p.steps)
	var suspend []string
	for _, proc := range suspended {
		if !old.Suspended(proc) {
			suspend = append(suspend, proc)
		}
	}
	if !begun && len(suspend) > 1 && slices.Contains(suspend, asg.ProcessAZRebalance) {
		// AZRebalance first, on its own: it stays suspended even if the
		// per-zone groups cannot be created (as the balancer keeps it on
		// every group that spans zones).
		add(name, "SuspendProcesses", asg.ProcessAZRebalance, func(ctx context.Context, c Cloud) error {
			return c.SuspendProcesses(ctx, name, asg.ProcessAZRebalance)
		})
		suspend = slices.DeleteFunc(suspend, func(p string) bool { return p == asg.ProcessAZRebalance })
		first = len(p.steps)
	}
	if len(suspend) > 0 {
		add(name, "SuspendProcesses", strings.Join(suspend, ","), func(ctx context.Context, c Cloud) error { return c.SuspendProcesses(ctx, name, suspend...) })
	}
	// 2. Record the original sizes, which the group is about to lose.
	orig := sizes{old.MinSize, old.MaxSize}
	if v, ok := old.Tags[TagSizes]; ok {
		if orig, err = parseSizes(v); err != nil {
			bad := fmt.Errorf("%w: group %s: %w; set it to the group's sizes before the split, as min=<n>,max=<n>", ErrRefused, name, err)
			if !begun {
				return p, bad
			}
			// The batch in flight is attached first: room for it comes
			// from the instances counted per zone (maxZ), not from the
			// sizes, which the end of the split needs and waits for.
			orig, err = sizes{old.MinSize, old.MaxSize}, nil
			if refuse == nil {
				refuse = bad
			}
		}
	} else {
		tags := map[string]string{TagSizes: orig.String()}
		if state == "" {
			tags[TagState] = stateStarted
		}
		var detail []string
		for _, k := range sortedKeys(tags) {
			detail = append(detail, k+"="+tags[k])
		}
		st := add(name, "CreateOrUpdateTags", strings.Join(detail, " "),
			func(ctx context.Context, c Cloud) error { return c.SetGroupTags(ctx, name, tags) })
		if v, ok := tags[TagState]; ok {
			guarded(st, &v)
		}
	}

	// Detaching with a decrement may not go below the minimum size.
	if old.MinSize > 0 {
		add(name, "UpdateAutoScalingGroup", "min=0", func(ctx context.Context, c Cloud) error {
			return c.UpdateGroupSize(ctx, name, asg.Sizes{Min: ptr.To(int32(0))})
		})
	}

	// Where every instance is: the group, its zone's group, or in flight.
	inOld := map[string]*asg.GroupInstance{}
	count := map[string]int32{}
	for i := range old.Instances {
		inOld[old.Instances[i].ID] = &old.Instances[i]
		count[old.Instances[i].Zone]++
	}
	inZone := map[string]*asg.GroupInstance{}
	for z, zg := range snap.zoneGroups {
		for i := range zg.Instances {
			inZone[zg.Instances[i].ID] = &zg.Instances[i]
			count[z]++
		}
	}
	flightZone, flight, inFlight := parseMove(state)
	for _, m := range flight {
		if !m.back && inOld[m.id] == nil && inZone[m.id] == nil && !gone(snap.ec2State[m.id]) {
			count[flightZone]++ // detached, on its way to its zone's group
		}
	}

	n := int32(len(snap.zones))
	maxZ := func(z string) int32 { return max(ceilDiv(orig.max, n), count[z]) }
	minZ := func(z string) int32 { return min(ceilDiv(orig.min, n), count[z]) }

	// 3. One group per zone, hooked from the start; room for every instance.
	tags := map[string]string{TagFrom: name}
	for k, v := range old.Tags {
		if k != TagState && k != TagSizes && k != TagLock && k != TagImages && !strings.HasPrefix(k, TagRecordPrefix) && !strings.HasPrefix(k, "aws:") {
			tags[k] = v
		}
	}
	var hooksMissing []string // set by the hook puts AWS refused this pass
	for _, z := range snap.zones {
		zname := ZoneGroupName(name, z)
		zg := snap.zoneGroups[z]
		if snap.foreign[z] != nil { // refused below, once the batch in flight is finished
			continue
		}
		if zg == nil {
			spec := asg.ZoneGroup{Source: name, Name: zname, Zone: z, MaxSize: maxZ(z), Tags: tags, Hooks: hooks}
			add(zname, "CreateAutoScalingGroup", fmt.Sprintf("zone=%s min=0 max=%d hooks=%d tags=%d", z, spec.MaxSize, len(spec.Hooks), len(tags)),
				func(ctx context.Context, c Cloud) error { return c.CreateZoneGroup(ctx, spec) })
			continue
		}
		for _, h := range hooks {
			if !slices.ContainsFunc(snap.zoneHooks[z], func(x asg.Hook) bool {
				return x.Name == h.Name && x.Transition == h.Transition && x.HeartbeatTimeout == h.HeartbeatTimeout && x.DefaultResult == h.DefaultResult &&
					sameTarget(x, h)
			}) {
				h.Group = zname
				// A hook that lacks only the target (added mid-split) is no
				// reason to leave the batch in flight unattached: a refusal
				// (iam:PassRole on its RoleARN) is logged, and put again next pass.
				onlyTarget := slices.ContainsFunc(snap.zoneHooks[z], func(x asg.Hook) bool {
					return x.Name == h.Name && x.Transition == h.Transition && x.HeartbeatTimeout == h.HeartbeatTimeout && x.DefaultResult == h.DefaultResult
				})
				// A wholly new hook refused once the split has begun (a batch
				// may be in flight) is no reason either: the batch in flight
				// is attached and finished, and the split refuses before the
				// next batch (hooksMissing) until the hook is in place.
				add(zname, "PutLifecycleHook", h.Name+" "+h.Transition, func(ctx context.Context, c Cloud) error {
					err := c.PutLifecycleHook(ctx, h)
					switch {
					case err == nil:
						return nil
					case onlyTarget:
						return &warning{fmt.Errorf("cannot give the hook %s of %s the notification target %s of the split group's; its consumer is not notified of that group's instances until it has it: %w", h.Name, zname, h.NotificationTargetARN, err)}
					case begun:
						hooksMissing = append(hooksMissing, fmt.Sprintf("%s on %s (%v)", h.Name, zname, err))
						return &warning{fmt.Errorf("cannot put the hook %s on %s; the batch in flight is finished, and no next batch is moved until the hook is in place: %w", h.Name, zname, err)}
					}
					return err
				})
			}
		}
		if m := maxZ(z); zg.MaxSize < m {
			add(zname, "UpdateAutoScalingGroup", fmt.Sprintf("max=%d", m), func(ctx context.Context, c Cloud) error {
				return c.UpdateGroupSize(ctx, zname, asg.Sizes{Max: ptr.To(m)})
			})
		}
	}

	// Before the split has begun, the per-zone groups are created (and
	// hooked) before steps 1 and 2, AZRebalance aside: a creation AWS refuses for good (iam:PassRole on a
	// hook's role) then leaves the group as it was, able to launch and
	// terminate with its minimum, rather than suspended and zeroed by a
	// split that cannot go on. A crash after the creation leaves groups
	// tagged split-from, which the next pass takes as the split's.
	if !begun {
		var create, rest []step
		for _, st := range p.steps[first:] {
			if st.Target != "asg/"+name { // step 3: the per-zone groups
				create = append(create, st)
			} else {
				rest = append(rest, st)
			}
		}
		p.steps = append(append(p.steps[:first], create...), rest...)
	}

	imagesTag := old.Tags[TagImages]
	detach := func(ids []string) {
		// The batch's AMIs are recorded first, then protected from
		// deregistration, so that a crash in between leaves nothing
		// protected that no tag names: the protection is lifted once the
		// batch is attached (or re-enabled by the next pass).
		var enable []string
		guarded(add(name, "CreateOrUpdateTags", TagImages+" (the AMIs to protect)", func(ctx context.Context, c Cloud) error {
			var err error
			enable, err = recordImages(ctx, c, name, ids, imagesTag)
			return err
		}), nil)
		add("", "EnableImageDeregistrationProtection", "AMIs of "+strings.Join(ids, ","), func(ctx context.Context, c Cloud) error {
			enableImages(ctx, c, name, enable)
			return nil
		})
		guarded(add(name, "DetachInstances", strings.Join(ids, ","), func(ctx context.Context, c Cloud) error {
			// The AMIs again, right before: one deregistered since the
			// snapshot would leave the instance in no group.
			no := map[string]string{}
			if err := unmovable(ctx, c, ids, no); err != nil {
				return fmt.Errorf("checking the AMIs again before detaching: %w", err)
			}
			if len(no) > 0 {
				var why []string
				for _, id := range sortedKeys(no) {
					why = append(why, id+": "+no[id])
				}
				return fmt.Errorf("not detaching, AttachInstances would refuse %s; the next pass takes them off the record", strings.Join(why, "; "))
			}
			return c.DetachInstances(ctx, name, ids)
		}), nil)
	}
	attach := func(z string, ids []string) {
		zname := ZoneGroupName(name, z)
		guarded(add(zname, "AttachInstances", strings.Join(ids, ","), func(ctx context.Context, c Cloud) error {
			err := c.AttachInstances(ctx, zname, ids)
			if err == nil || !asg.IsValidationError(err) {
				return err
			}
			return attachOrReturn(ctx, c, name, zname, z, flight, ids, err)
		}), nil)
	}
	protect := func(z string, ids []string) {
		zname := ZoneGroupName(name, z)
		add(zname, "SetInstanceProtection", "protected=true "+strings.Join(ids, ","), func(ctx context.Context, c Cloud) error {
			return c.SetInstanceProtection(ctx, zname, ids, true)
		})
	}

	// 4. The batch on record: every instance of it must reach its zone's
	// group before another batch is recorded over it.
	batchSteps := len(p.steps) // the steps from here on finish the batch before
	handled := map[string]bool{}
	if inFlight {
		var toDetach, toAttach, toProtect, toReturn, toProtectBack, unrecord []string
		onWay := false // an instance of the batch is detaching or in no group
		for _, m := range flight {
			handled[m.id] = true
			if oi := inOld[m.id]; inZone[m.id] == nil && !gone(snap.ec2State[m.id]) && (oi == nil || oi.LifecycleState == lifecycleDetaching) {
				onWay = true
			}
			if m.back { // refused by its zone's group: back to the split group, for good
				switch {
				case inOld[m.id] != nil:
					p.stranded = append(p.stranded, fmt.Sprintf("%s: AWS refused to attach it to %s; it is back in %s", m.id, ZoneGroupName(name, flightZone), name))
					// Protected again where it is, once InService: it lost
					// its protection on detach.
					if oi := inOld[m.id]; m.protected && !oi.ProtectedFromScaleIn {
						if protectable(oi.LifecycleState) {
							toProtectBack = append(toProtectBack, m.id)
						} else {
							p.waiting = append(p.waiting, fmt.Sprintf("instance %s is %s in %s; it is protected from scale-in again once InService", m.id, oi.LifecycleState, name))
						}
					}
				case inZone[m.id] != nil: // attached after all
					if zi := inZone[m.id]; m.protected && !zi.ProtectedFromScaleIn {
						if protectable(zi.LifecycleState) {
							toProtect = append(toProtect, m.id)
						} else {
							p.waiting = append(p.waiting, fmt.Sprintf("instance %s is %s in %s; it is protected from scale-in again once InService", m.id, zi.LifecycleState, ZoneGroupName(name, flightZone)))
						}
					}
				case gone(snap.ec2State[m.id]): // terminated
				case snap.ec2State[m.id] == "running":
					toReturn = append(toReturn, m.id)
				default:
					p.waiting = append(p.waiting, fmt.Sprintf("instance %s of the batch in flight goes back to %s; it is in no group and %q in EC2", m.id, name, snap.ec2State[m.id]))
				}
				continue
			}
			switch i := inOld[m.id]; {
			case i != nil && i.LifecycleState == asg.StateInService && snap.unmovable[m.id] != "":
				// Recorded, not yet detached, and no group would take it
				// once detached: it stays, and leaves the record.
				why := snap.unmovable[m.id]
				p.stranded = append(p.stranded, m.id+": "+why)
				unrecord = append(unrecord, m.id)
			case i != nil && i.LifecycleState == asg.StateInService: // recorded, not yet detached
				toDetach = append(toDetach, m.id)
			case i != nil:
				p.waiting = append(p.waiting, fmt.Sprintf("instance %s of the batch in flight is %s in %s", m.id, i.LifecycleState, name))
			case inZone[m.id] != nil:
				zi := inZone[m.id]
				switch {
				case !m.protected || zi.ProtectedFromScaleIn:
				case protectable(zi.LifecycleState):
					toProtect = append(toProtect, m.id)
				default: // SetInstanceProtection refuses the whole call for one such instance
					p.waiting = append(p.waiting, fmt.Sprintf("instance %s is %s in %s; it is protected from scale-in again once InService", m.id, zi.LifecycleState, ZoneGroupName(name, flightZone)))
				}
			case snap.ec2State[m.id] == "running":
				toAttach = append(toAttach, m.id)
				if m.protected { // attached instances are Pending first: protected on a later pass
					p.waiting = append(p.waiting, fmt.Sprintf("instance %s is attached to %s; it is protected from scale-in again once InService", m.id, ZoneGroupName(name, flightZone)))
				}
			case gone(snap.ec2State[m.id]): // terminated by someone else while detached: nothing to move
			case snap.ec2State[m.id] == "":
				// Never taken as proof that it is gone: the batch stays on
				// record until EC2 says where the instance is.
				p.waiting = append(p.waiting, fmt.Sprintf("instance %s of the batch in flight is in no group and unknown to EC2", m.id))
			default:
				p.waiting = append(p.waiting, fmt.Sprintf("instance %s of the batch in flight is in no group and %s; it is attached once running", m.id, snap.ec2State[m.id]))
			}
		}
		if onWay && len(toDetach) == 0 && len(snap.unprotected) > 0 {
			// An AMI on record for the batch lost its protection (a crash
			// between recording and enabling it, or someone lifted it):
			// protected again while an instance is on its way.
			amis := snap.unprotected
			add("", "EnableImageDeregistrationProtection", strings.Join(amis, ",")+" (recorded in "+TagImages+", not protected)", func(ctx context.Context, c Cloud) error {
				enableImages(ctx, c, name, amis)
				return nil
			})
		}
		if len(unrecord) > 0 {
			// The record without them, before any detach: a later pass
			// must not detach them either.
			var keep []moved
			for _, m := range flight {
				if !slices.Contains(unrecord, m.id) {
					keep = append(keep, m)
				}
			}
			value := stateStarted
			if len(keep) > 0 {
				value = formatMove(flightZone, keep)
			}
			guarded(add(name, "CreateOrUpdateTags", TagState+"="+value, func(ctx context.Context, c Cloud) error {
				return c.SetGroupTags(ctx, name, map[string]string{TagState: value})
			}), &value)
		}
		if len(toDetach) > 0 {
			detach(toDetach)
			p.waiting = append(p.waiting, fmt.Sprintf("instances %s are detaching from %s", strings.Join(toDetach, ","), name))
		}
		if len(toAttach) > 0 {
			attach(flightZone, toAttach)
		}
		if len(toProtect) > 0 {
			protect(flightZone, toProtect)
		}
		if len(toProtectBack) > 0 {
			add(name, "SetInstanceProtection", "protected=true "+strings.Join(toProtectBack, ","), func(ctx context.Context, c Cloud) error {
				return c.SetInstanceProtection(ctx, name, toProtectBack, true)
			})
		}
		if len(toReturn) > 0 {
			guarded(add(name, "AttachInstances", strings.Join(toReturn, ","), func(ctx context.Context, c Cloud) error {
				return attachWithRoom(ctx, c, name, toReturn)
			}), nil)
		}
		if len(p.waiting) > 0 || len(p.stranded) > 0 || len(toReturn) > 0 {
			// The batch stays on record until it is attached; one with an
			// instance sent back stays for good, and the split waits for
			// the operator to replace that instance.
			p.waiting = append(p.waiting, p.stranded...)
			return p, nil
		}
	}

	// 4b. Per-instance records: those of instances now in a per-zone group
	// or terminated are done with; one of an instance detaching or detached
	// but on no TagState (overwritten by a record that landed late) is
	// taken back on record, and handled as the batch in flight next pass.
	// Only an instance Detaching from the split group, or one EC2 says runs
	// in no group, is taken back on record; a record naming no instance ID
	// or an instance of another group is reported (Pass logs it) and
	// deleted, one of an instance unknown to EC2 is ignored.
	recs := records(old.Tags)
	var doneRecs, badRecs []string
	stray := map[string][]moved{}
	for _, id := range sortedKeys(recs) {
		zone, protected := strings.CutSuffix(recs[id], protectedMark)
		switch i := inOld[id]; {
		case snap.badRecords[TagRecordPrefix+id] != "":
			badRecs = append(badRecs, TagRecordPrefix+id)
		case inZone[id] != nil, i == nil && gone(snap.ec2State[id]):
			doneRecs = append(doneRecs, TagRecordPrefix+id)
		case handled[id]:
		case i != nil && i.LifecycleState != lifecycleDetaching:
			// Still in the group, not detaching: nothing moves it.
		case i == nil && snap.elsewhere[id] != "":
			badRecs = append(badRecs, TagRecordPrefix+id)
		case i == nil && snap.ec2State[id] == "":
			// Unknown to EC2 and in no group: nothing to attach.
		case !slices.Contains(snap.zones, zone) && snap.zoneGroups[zone] == nil:
			p.waiting = append(p.waiting, fmt.Sprintf("instance %s is recorded for zone %q, which is not one of %s's", id, zone, name))
		case i != nil, snap.ec2State[id] == "running":
			stray[zone] = append(stray[zone], moved{id: id, protected: protected})
		default:
			p.waiting = append(p.waiting, fmt.Sprintf("instance %s is recorded for zone %s, in no group and %s in EC2; it is taken back on record once running", id, zone, snap.ec2State[id]))
		}
	}
	if len(doneRecs) > 0 {
		add(name, "DeleteTags", strings.Join(doneRecs, ","), func(ctx context.Context, c Cloud) error { return c.DeleteGroupTags(ctx, name, doneRecs) })
	}
	if len(badRecs) > 0 {
		add(name, "DeleteTags", strings.Join(badRecs, ",")+" (ignored records)", func(ctx context.Context, c Cloud) error { return c.DeleteGroupTags(ctx, name, badRecs) })
	}
	for _, z := range sortedKeys(stray) {
		value := formatMove(z, stray[z])
		guarded(add(name, "CreateOrUpdateTags", TagState+"="+value, func(ctx context.Context, c Cloud) error {
			return c.SetGroupTags(ctx, name, map[string]string{TagState: value})
		}), &value)
		p.waiting = append(p.waiting, fmt.Sprintf("instances of zone %s were detached on a record another write overwrote; they are on record again", z))
		return p, nil
	}
	if len(p.waiting) > 0 {
		return p, nil
	}
	// The batch before is attached: lift the deregistration protection the
	// split set for it (the next batch sets it again for its own AMIs).
	if amis := strings.Fields(imagesTag); len(amis) > 0 {
		add("", "DisableImageDeregistrationProtection", strings.Join(amis, ","), func(ctx context.Context, c Cloud) error {
			// Another group's split may need the same AMI for its own
			// batch (one AMI for several node groups is common): the last
			// split that records it lifts it.
			others, err := imagesOfOtherSplits(ctx, c, name)
			if err != nil {
				return err
			}
			var lifted []string
			for _, ami := range amis {
				if g := others[ami]; len(g) > 0 {
					klog.FromContext(ctx).Info("Keeping the deregistration protection of an AMI another split still records", "group", name, "ami", ami, "recordedBy", g)
					continue
				}
				if err := c.SetImageProtection(ctx, ami, false); err != nil && !isImageNotFound(err) {
					return err
				}
				lifted = append(lifted, ami)
			}
			if len(lifted) == 0 {
				return nil
			}
			// A split that recorded the AMI after the read above enables it
			// only after its record, which may have come before the lift:
			// read the records again and protect what is now recorded.
			// (Record, then enable, on its side; lift, then read, on this
			// one: one of the two sees the other.)
			if others, err = imagesOfOtherSplits(ctx, c, name); err != nil {
				return err
			}
			for _, ami := range lifted {
				if g := others[ami]; len(g) > 0 {
					klog.FromContext(ctx).Info("Protecting again an AMI another split recorded while it was lifted", "group", name, "ami", ami, "recordedBy", g)
					if err := c.SetImageProtection(ctx, ami, true); err != nil {
						return err
					}
				}
			}
			return nil
		})
		add(name, "DeleteTags", TagImages, func(ctx context.Context, c Cloud) error { return c.DeleteGroupTags(ctx, name, []string{TagImages}) })
		imagesTag = ""
	}
	// The batch before is attached: no new one without the group's
	// original sizes, nor beside a group named like a per-zone group that
	// is not the split's. What finishes the batch before (its
	// protection, its records, its AMIs) is done first.
	if refuse != nil {
		if len(p.steps) > batchSteps {
			p.waiting = append(p.waiting, "once the batch before is finished: "+refuse.Error())
			return p, nil
		}
		return plan{}, refuse
	}
	// A hook AWS refused to put on a per-zone group this pass (step 3):
	// nothing after the batch before is made without it.
	gate := len(p.steps)
	defer func() {
		if err != nil || len(p.steps) <= gate {
			return
		}
		next := p.steps[gate].do
		p.steps[gate].do = func(ctx context.Context, c Cloud) error {
			if len(hooksMissing) > 0 {
				return fmt.Errorf("%w: AWS refused to put the split group's lifecycle hooks on its per-zone groups: %s; the split goes on once they are in place (grant the splitter iam:PassRole on the hook's role, see docs/operations.md)",
					ErrRefused, strings.Join(hooksMissing, "; "))
			}
			return next(ctx, c)
		}
	}()

	// 5. The next batch, cut to fit in the state tag and one call: record
	// it, then detach it; it is attached by a later pass, once detached.
	var blocked []string
	// Each instance of a batch takes a tag of its own (TagRecordPrefix).
	// TagSizes may be written by step 2 of this same pass, TagImages by
	// the batch's detach step.
	room := recordRoom(old.Tags)
	for _, z := range snap.zones {
		var batch []moved
		for _, i := range old.Instances {
			if i.Zone != z || handled[i.ID] {
				continue
			}
			if i.LifecycleState != asg.StateInService {
				blocked = append(blocked, fmt.Sprintf("instance %s is %s in %s", i.ID, i.LifecycleState, name))
				continue
			}
			if why, ok := snap.unmovable[i.ID]; ok { // never detached: it could not be attached again
				p.stranded = append(p.stranded, i.ID+": "+why)
				blocked = append(blocked, fmt.Sprintf("instance %s stays in %s: %s; replace it to let the split finish", i.ID, name, why))
				continue
			}
			next := append(slices.Clone(batch), moved{id: i.ID, protected: i.ProtectedFromScaleIn})
			// Room for a back mark ("!") per instance, which attachOrReturn
			// may add to this record later.
			if len(next) > room && len(batch) == 0 {
				blocked = append(blocked, fmt.Sprintf("instance %s waits for room for its record tag (%s has %d tags, at most %d)", i.ID, name, len(old.Tags), maxGroupTags))
				break
			}
			if len(next) > asg.MaxMoveBatch || len(next) > room || len(formatMove(z, next))+len(next)*len(backMark) > maxTagValue {
				break
			}
			batch = next
		}
		if len(batch) == 0 {
			continue
		}
		value := formatMove(z, batch)
		tags := map[string]string{TagState: value}
		for _, m := range batch {
			tags[TagRecordPrefix+m.id] = z
			if m.protected {
				tags[TagRecordPrefix+m.id] += protectedMark
			}
		}
		guarded(add(name, "CreateOrUpdateTags", TagState+"="+value, func(ctx context.Context, c Cloud) error {
			return c.SetGroupTags(ctx, name, tags)
		}), &value)
		var ids []string
		for _, m := range batch {
			ids = append(ids, m.id)
		}
		detach(ids)
		p.waiting = append(p.waiting, fmt.Sprintf("instances %s are detaching from %s", strings.Join(ids, ","), name))
		return p, nil
	}
	// An instance of a zone the group no longer lists (dropped while
	// AZRebalance was suspended: it keeps running, a member of the group)
	// has no zone group to go to and no subnet of the group to start one
	// in: the split waits for it, never ends with it in an emptied group.
	for _, i := range old.Instances {
		if handled[i.ID] || slices.Contains(snap.zones, i.Zone) {
			continue
		}
		why := fmt.Sprintf("its zone %q is not one of the group's zones %v", i.Zone, snap.zones)
		p.stranded = append(p.stranded, i.ID+": "+why)
		blocked = append(blocked, fmt.Sprintf("instance %s stays in %s: %s; replace it, or add its zone to the group again, to let the split finish", i.ID, name, why))
	}
	if len(blocked) > 0 {
		p.waiting = append(p.waiting, blocked...)
		return p, nil
	}

	// 6. Per-zone minimums, now that the instances are there. Counted are
	// the instances that stay: InService or Pending, at most the desired
	// capacity, and those of the batch this pass attaches. One leaving
	// (Terminating, held by a hook, or Detaching) is out of the desired
	// capacity already, and a minimum above the desired capacity raises it
	// (API_UpdateAutoScalingGroup): AWS would launch.
	for _, z := range snap.zones {
		zname := ZoneGroupName(name, z)
		have, staying := int32(0), int32(0)
		if zg := snap.zoneGroups[z]; zg != nil {
			have = zg.MinSize
			for _, i := range zg.Instances {
				if i.LifecycleState == asg.StateInService || strings.HasPrefix(i.LifecycleState, "Pending") {
					staying++
				}
			}
			staying = min(staying, zg.DesiredCapacity)
		}
		for _, m := range flight {
			if z == flightZone && !m.back && inOld[m.id] == nil && inZone[m.id] == nil && !gone(snap.ec2State[m.id]) {
				staying++ // attached by this pass
			}
		}
		if m := min(minZ(z), staying); m != have {
			add(zname, "UpdateAutoScalingGroup", fmt.Sprintf("min=%d", m), func(ctx context.Context, c Cloud) error {
				return c.UpdateGroupSize(ctx, zname, asg.Sizes{Min: ptr.To(m)})
			})
		}
	}

	// 7. Empty the old group for good and let cluster-autoscaler forget it.
	if old.MinSize != 0 || old.MaxSize != 0 || old.DesiredCapacity != 0 {
		add(name, "UpdateAutoScalingGroup", "min=0 max=0 desired=0", func(ctx context.Context, c Cloud) error {
			return c.UpdateGroupSize(ctx, name, asg.Sizes{Min: ptr.To(int32(0)), Max: ptr.To(int32(0)), Desired: ptr.To(int32(0))})
		})
	}
	done := StateDone
	guarded(add(name, "CreateOrUpdateTags", TagState+"="+StateDone, func(ctx context.Context, c Cloud) error {
		return c.SetGroupTags(ctx, name, map[string]string{TagState: StateDone})
	}), &done)
	keys := append(append(discoveryKeys(old.Tags, sel), TagSizes, TagLock, TagImages), recordKeys(old.Tags)...)
	add(name, "DeleteTags", strings.Join(keys, ","), func(ctx context.Context, c Cloud) error { return c.DeleteGroupTags(ctx, name, keys) })
	p.done = true
	return p, nil
}

// sameTarget reports whether the per-zone group's hook zh notifies what the
// split group's hook h does: h's notification target, role and metadata,
// each where h has one (PutLifecycleHook leaves out what h does not have,
// so a target added on the per-zone group alone is left there).
func sameTarget(zh, h asg.Hook) bool {
	same := func(z, g string) bool { return g == "" || z == g }
	return same(zh.NotificationTargetARN, h.NotificationTargetARN) && same(zh.RoleARN, h.RoleARN) && same(zh.NotificationMetadata, h.NotificationMetadata)
}

const lifecycleDetaching = "Detaching"

// protectable reports whether SetInstanceProtection accepts an instance in
// this lifecycle state; one in any other state fails the whole call.
func protectable(state string) bool {
	return state == asg.StateInService || state == asg.StateEnteringStandby || state == asg.StateStandby
}

// attachOrReturn handles an AttachInstances of the batch in flight that AWS
// refused (a ValidationError, first): the instances are tried one by one,
// and those refused alone are recorded as going back ("!") and attached back
// to the split group, which still has room for them (its maximum is only
// lowered once the split is done). They are never left in no group.
//
// Two refusals are not for good, and the group is described first to tell
// them: an instance already a member of the zone's group was attached by an
// earlier call whose reply was lost (the SDK retried it; AWS refuses to
// attach a member of a group, user guide ec2-auto-scaling-detach-attach-
// instances), which is success; and a zone group too full for the batch
// (API_AttachInstances: "If the number of instances being attached plus the
// desired capacity of the group exceeds the maximum size of the group, the
// operation fails"; cluster-autoscaler may have scaled it up) gets its
// maximum raised, the split owning it, and the batch is attached again at
// once.
func attachOrReturn(ctx context.Context, c Cloud, name, zname, zone string, flight []moved, ids []string, first error) error {
	gs, err := c.DescribeGroups(ctx, asg.Selector{Names: []string{zname}})
	if err != nil {
		return fmt.Errorf("AWS refused to attach %s to %s (%w); describing the group: %w", strings.Join(ids, ","), zname, first, err)
	}
	if len(gs) == 0 {
		return fmt.Errorf("AWS refused to attach %s to %s: %w; the group is not found", strings.Join(ids, ","), zname, first)
	}
	zg := &gs[0]
	var rest []string
	for _, id := range ids {
		if !slices.ContainsFunc(zg.Instances, func(i asg.GroupInstance) bool { return i.ID == id }) {
			rest = append(rest, id)
		}
	}
	if len(rest) == 0 {
		return nil // attached by a call whose reply was lost
	}
	if need := zg.DesiredCapacity + int32(len(rest)); need > zg.MaxSize {
		if err := c.UpdateGroupSize(ctx, zname, asg.Sizes{Max: ptr.To(need)}); err != nil {
			return fmt.Errorf("%s is full (desired %d, max %d) and raising its maximum failed: %w; AttachInstances said: %w", zname, zg.DesiredCapacity, zg.MaxSize, err, first)
		}
		if err := c.AttachInstances(ctx, zname, rest); err == nil || !asg.IsValidationError(err) {
			return err
		}
	}
	var refused, why []string
	for _, id := range rest {
		if err := c.AttachInstances(ctx, zname, []string{id}); err != nil {
			if !asg.IsValidationError(err) {
				return err
			}
			refused = append(refused, id)
			why = append(why, id+": "+err.Error())
		}
	}
	if len(refused) == 0 {
		return nil
	}
	batch := slices.Clone(flight)
	for i := range batch {
		if slices.Contains(refused, batch[i].id) {
			batch[i].back = true
		}
	}
	value := formatMove(zone, batch)
	if err := recheck(ctx); err != nil {
		return err
	}
	if err := c.SetGroupTags(ctx, name, map[string]string{TagState: value}); err != nil {
		return fmt.Errorf("AWS refused to attach %s to %s (%s); recording that they go back to %s: %w", strings.Join(refused, ","), zname, strings.Join(why, "; "), name, err)
	}
	if err := attachWithRoom(ctx, c, name, refused); err != nil {
		return fmt.Errorf("AWS refused to attach %s to %s (%s), and attaching them back to %s failed too: %w; they stay on record", strings.Join(refused, ","), zname, strings.Join(why, "; "), name, err)
	}
	return fmt.Errorf("AWS refused to attach %s to %s (%s); attached them back to %s, where they stay: %w", strings.Join(refused, ","), zname, strings.Join(why, "; "), name, first)
}

// attachWithRoom attaches instances back to the split group. The group keeps
// cluster-autoscaler's discovery tags until the split is done, so
// cluster-autoscaler may have raised its desired capacity to its maximum
// (Launch is suspended: no instance comes of it), and AttachInstances then
// fails (API_AttachInstances: "If the number of instances being attached
// plus the desired capacity of the group exceeds the maximum size of the
// group, the operation fails"). On such a refusal the group is described:
// instances already its members were attached by a call whose reply was
// lost, and a group too full for the others gets its maximum raised (step 7
// sets it to 0 once the split is done) before they are attached again.
func attachWithRoom(ctx context.Context, c Cloud, group string, ids []string) error {
	first := c.AttachInstances(ctx, group, ids)
	if first == nil || !asg.IsValidationError(first) {
		return first
	}
	gs, err := c.DescribeGroups(ctx, asg.Selector{Names: []string{group}})
	if err != nil {
		return fmt.Errorf("attaching %s to %s: %w; describing the group: %w", strings.Join(ids, ","), group, first, err)
	}
	if len(gs) == 0 {
		return fmt.Errorf("attaching %s to %s: %w; the group is not found", strings.Join(ids, ","), group, first)
	}
	g := &gs[0]
	var rest []string
	for _, id := range ids {
		if !slices.ContainsFunc(g.Instances, func(i asg.GroupInstance) bool { return i.ID == id }) {
			rest = append(rest, id)
		}
	}
	if len(rest) == 0 {
		return nil
	}
	need := g.DesiredCapacity + int32(len(rest))
	if need <= g.MaxSize {
		return fmt.Errorf("attaching %s to %s: %w", strings.Join(rest, ","), group, first)
	}
	if err := c.UpdateGroupSize(ctx, group, asg.Sizes{Max: ptr.To(need)}); err != nil {
		return fmt.Errorf("%s is full (desired %d, max %d) and raising its maximum failed: %w; AttachInstances said: %w", group, g.DesiredCapacity, g.MaxSize, err, first)
	}
	return c.AttachInstances(ctx, group, rest)
}

// recordImages finds the AMIs to protect from deregistration of the
// instances ids that the account owns, before they are detached
// (API_EnableImageDeregistrationProtection: "When deregistration protection
// is enabled, the AMI can't be deregistered."): AttachInstances refuses an
// instance whose AMI is gone, and a detached instance would then run in no
// group.
//
// The AMIs are recorded in TagImages (recorded is its value so far) before
// their protection is enabled, so that no crash leaves one protected with
// no tag to say it is to be lifted. Every AMI of the batch that the account
// owns is recorded and enabled (a no-op when it is protected already),
// whatever its protection reads now: another group's split that records the
// same AMI may lift it between that read and its own reads of the records
// (its last batch attached), and a protection read then would leave this
// batch unprotected. An AMI someone else protected is thus lifted by the
// last split that records it. An AMI the account does not own, or that
// cannot be protected, is logged as a risk and the batch still moves. It
// records them and returns those to enable (enableImages).
func recordImages(ctx context.Context, c Cloud, group string, ids []string, recorded string) ([]string, error) {
	logger := klog.FromContext(ctx).WithValues("group", group)
	insts, err := c.DescribeInstances(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("describing the batch's instances to protect their AMIs: %w", err)
	}
	mine := strings.Fields(recorded)
	amis := slices.Clone(mine)
	for _, i := range insts {
		if i.ImageID != "" {
			amis = append(amis, i.ImageID)
		}
	}
	slices.Sort(amis)
	amis = slices.Compact(amis)
	if len(amis) == 0 {
		return nil, nil
	}
	owned, err := c.OwnedImages(ctx, amis)
	if err != nil {
		return nil, fmt.Errorf("describing the batch's AMIs to protect them: %w", err)
	}
	var enable []string
	for _, ami := range amis {
		if _, ok := owned[ami]; !ok {
			logger.Info("Warning: cannot protect an AMI of the batch from deregistration (not the account's); if it is deregistered while the batch is detached, its instances run in no group", "ami", ami)
			continue
		}
		if !slices.Contains(mine, ami) {
			if len(strings.Join(append(slices.Clone(mine), ami), " ")) > maxTagValue {
				logger.Info("Warning: no room to record one more protected AMI; it is not protected from deregistration while the batch is detached", "ami", ami)
				continue
			}
			mine = append(mine, ami)
		}
		enable = append(enable, ami)
	}
	if v := strings.Join(mine, " "); v != recorded {
		if err := c.SetGroupTags(ctx, group, map[string]string{TagImages: v}); err != nil {
			return nil, fmt.Errorf("recording the AMIs to protect: %w", err)
		}
	}
	return enable, nil
}

// enableImages enables the deregistration protection of amis; a failure is
// logged as a risk, and the batch still moves.
func enableImages(ctx context.Context, c Cloud, group string, amis []string) {
	logger := klog.FromContext(ctx).WithValues("group", group)
	for _, ami := range amis {
		if err := c.SetImageProtection(ctx, ami, true); err != nil {
			logger.Info("Warning: cannot protect an AMI of the batch from deregistration; if it is deregistered while the batch is detached, its instances run in no group", "ami", ami, "err", err)
		}
	}
}

// imagesOfOtherSplits returns, by AMI, the groups other than group whose
// split records it in TagImages: every such group of the account and
// region, whichever cluster discovers it. An AMI is an account-wide
// resource that several clusters' groups may launch from, so a split that
// read only its own cluster's groups would lift the protection under
// another cluster's batch. DescribeAutoScalingGroups with the filter
// tag-key=TagImages alone ("tag-key - Accepts tag keys. The results only
// include information about the Auto Scaling groups associated with these
// tag keys.", API_Filter), every page.
func imagesOfOtherSplits(ctx context.Context, c Cloud, group string) (map[string][]string, error) {
	gs, err := c.DescribeGroups(ctx, asg.Selector{TagKeys: []string{TagImages}})
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, g := range gs {
		if g.Name == group {
			continue
		}
		for _, ami := range strings.Fields(g.Tags[TagImages]) {
			out[ami] = append(out[ami], g.Name)
		}
	}
	return out, nil
}

// missing counts the keys that tags lacks.
func missing(tags map[string]string, keys ...string) int {
	n := 0
	for _, k := range keys {
		if _, ok := tags[k]; !ok {
			n++
		}
	}
	return n
}

// recordRoom is how many per-instance records fit on a group with tags once
// the split's own tags (TagState, TagSizes, TagImages, and extra) are there.
func recordRoom(tags map[string]string, extra ...string) int {
	return maxGroupTags - len(tags) - missing(tags, append([]string{TagState, TagSizes, TagImages}, extra...)...)
}

// isImageNotFound reports whether EC2 no longer knows an AMI.
func isImageNotFound(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && strings.HasPrefix(api.ErrorCode(), "InvalidAMIID.")
}
