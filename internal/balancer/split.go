package balancer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/split"
)

// The loop's side of splitting multi-zone groups (internal/split does the
// splitting): with --enforce=split every loop makes one pass of the split of
// each multi-zone group, and reports it.
const (
	// EnforceSuspend reports multi-zone groups and suspends their AZRebalance.
	EnforceSuspend = "suspend"
	// EnforceSplit also splits them into one group per zone.
	EnforceSplit = "split"
)

// EnforceValues are the valid zone policies.
var EnforceValues = []string{EnforceSuspend, EnforceSplit}

var _ Cloud = (*recordingCloud)(nil)

// loopOwner names this process in the split lock, with a nonce: two
// processes never share it, even with the same host name and pid.
var loopOwner = split.NewOwner("az-balancer-run")

// splitState is what the split step keeps between loops.
type splitState struct {
	splitter *split.Splitter // the loop's splitter, made on first use
	pass     splitPass       // loopSplitPass, or Plan's planSplitPass
}

// splitPass makes one pass of the split of a group: the loop's
// (loopSplitPass) or Plan's (planSplitPass).
type splitPass func(ctx context.Context, b *Balancer, group string) (split.Result, error)

// loopSplitPass makes the pass under the group's split lock, with one
// splitter per process: it remembers its void lock claims.
func loopSplitPass(ctx context.Context, b *Balancer, group string) (split.Result, error) {
	if b.splits.splitter == nil {
		b.splits.splitter = split.New(b.cloud, b.clock, b.splitOptions())
	}
	return b.splits.splitter.Pass(ctx, group)
}

// splitOptions are the loop's split options: the per-zone groups get the
// balancer's own hook with its current settings, never the split group's
// copy of it (which may predate an upgrade), so that the split and
// ensureHook agree on it.
func (b *Balancer) splitOptions() split.Options {
	h := b.hook("")
	return split.Options{Selector: b.opts.Selector, Owner: loopOwner, Hook: &h}
}

// planSplitPass records the steps of the next pass on rc, the lock aside,
// and makes none.
func planSplitPass(rc *recordingCloud) splitPass {
	return func(ctx context.Context, b *Balancer, group string) (split.Result, error) {
		res, err := split.New(rc, b.clock, b.splitOptions()).Plan(ctx, group)
		for _, st := range res.Steps {
			rc.record(strings.TrimPrefix(st.Target, "asg/"), st.Verb, "%s", st.Detail)
		}
		res.Steps = nil
		return res, err
	}
}

// splitGroup makes one pass of the split of g and reports it; the caller
// holds b.mu. A split waiting for instances to detach, or held by another
// splitter, is reported and is no failure of the loop: a later loop goes on.
func (b *Balancer) splitGroup(ctx context.Context, g *asg.Group, w *warnings) (changed bool, err error) {
	res, err := b.splits.pass(ctx, b, g.Name)
	if len(res.Steps) > 0 {
		w.normal(ReasonSplitGroup, "%s", msgSplitSteps(g, len(res.Steps)))
	}
	for _, st := range res.Steps {
		if st.Warning != "" {
			w.warn(ReasonSplitBlocked, "%s", msgSplitWarning(g, st))
		}
	}
	if err == nil || len(res.Stranded) > 0 {
		b.metrics.splitStranded.WithLabelValues(g.Name).Set(float64(len(res.Stranded)))
	}
	if len(res.Stranded) > 0 {
		w.warn(ReasonSplitBlocked, "%s", msgSplitStranded(g, res.Stranded))
	}
	switch {
	case errors.Is(err, split.ErrLocked):
		w.warn(ReasonSplitBlocked, "%s", msgSplitLocked(g, err))
		return false, nil
	case errors.Is(err, split.ErrRefused):
		// Bad input, reported: not a failure of the loop, which would
		// fail every loop (and the liveness probe) until the operator acts.
		w.warn(ReasonSplitBlocked, "%s", msgSplitFailed(g, err))
		return len(res.Steps) > 0, nil
	case err != nil:
		w.warn(ReasonSplitBlocked, "%s", msgSplitFailed(g, err))
		return len(res.Steps) > 0, err
	case res.Done:
		w.normal(ReasonSplitGroup, "%s", msgSplitDone(g))
	case len(res.Waiting) > 0:
		w.normal(ReasonSplitGroup, "%s", msgSplitWaiting(g, res.Waiting))
	}
	return len(res.Steps) > 0, nil
}

// splitDoneGroup reports whether g is the empty remainder of a finished split.
func splitDoneGroup(g *asg.Group) bool { return split.IsDone(g) }

// splitting reports whether g is being split (its split started, not done).
func splitting(g *asg.Group) bool { return g.Tags[split.TagState] != "" && !split.IsDone(g) }

// ZoneGroupName is the name of the group of zone split from group.
func ZoneGroupName(group, zone string) string { return split.ZoneGroupName(group, zone) }

func (r *recordingCloud) CreateZoneGroup(_ context.Context, zg asg.ZoneGroup) error {
	r.record(zg.Name, "CreateAutoScalingGroup", "from %s zone=%s min=%d max=%d", zg.Source, zg.Zone, zg.MinSize, zg.MaxSize)
	return nil
}

func (r *recordingCloud) UpdateGroupSize(_ context.Context, group string, s asg.Sizes) error {
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

// ImagesAvailable reads: a plan asks AWS as the pass would.
func (r *recordingCloud) ImagesAvailable(ctx context.Context, ids []string) (map[string]bool, error) {
	c, ok := r.Cloud.(split.Cloud)
	if !ok {
		return nil, errors.New("the AWS client cannot describe images")
	}
	return c.ImagesAvailable(ctx, ids)
}

func (r *recordingCloud) SetImageProtection(_ context.Context, id string, on bool) error {
	verb := "DisableImageDeregistrationProtection"
	if on {
		verb = "EnableImageDeregistrationProtection"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.actions = append(r.actions, Action{Target: "ec2/image/" + id, Verb: verb})
	return nil
}

func (r *recordingCloud) ClaimGroupTag(_ context.Context, group, key, value string) error {
	r.record(group, "CreateOrUpdateTags", "%s=%s", key, value)
	return nil
}

func (r *recordingCloud) DeleteGroupTags(_ context.Context, group string, keys []string) error {
	r.record(group, "DeleteTags", "%s", strings.Join(keys, ","))
	return nil
}
