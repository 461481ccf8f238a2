package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/ballast-k8s/ballast/cmd/az-balancer/app/options"
	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/balancer"
	"github.com/ballast-k8s/ballast/internal/split"
)

// splitClock paces the passes of `split`; tests replace it.
var splitClock clock.WithTicker = clock.RealClock{}

// splitPoll is the time between two passes of `split` while it waits for
// instances to detach or for its lock to settle.
const splitPoll = 5 * time.Second

// splitMaxBackoff bounds the wait before the pass after a failed one: it
// starts at splitPoll and doubles up to it.
const splitMaxBackoff = 2 * time.Minute

// splitMaxFailures is how many passes in a row may fail before `split` gives
// up, when no batch is on record; with a batch on record it never gives up
// by itself (the batch would run in no group), only when interrupted.
const splitMaxFailures = 20

// runSplit runs `az-balancer split`: passes until the split is done, printing
// each pass's steps; with dryRun, the steps of the next pass only. It holds
// the group's split lock (internal/split/lock.go), so it never interleaves
// with `run --enforce=split` or another `split`, and releases it on the way out.
//
// A pass that fails for a reason a later pass can get past (throttling past
// the SDK's retries, a 5xx, a timeout, the lock running out mid-pass) is
// followed by another after a backoff: after a DetachInstances, only a later
// pass attaches the batch, and `run` makes passes only with --enforce=split.
// It stops on split.ErrRefused, split.ErrLocked, stranded instances or the
// end of ctx, and, with no batch on record, after splitMaxFailures failed
// passes in a row. Stopping with a batch on record, it says so loudly: the
// instance IDs, and what to run.
func runSplit(ctx context.Context, cloud split.Cloud, opts split.Options, group string, dryRun bool, out io.Writer) error {
	s := split.New(cloud, splitClock, opts)
	if dryRun {
		res, err := s.Plan(ctx, group)
		if perr := balancer.PrintPlan(out, actions(res.Steps)); perr != nil {
			return perr
		}
		for _, w := range res.Waiting {
			fmt.Fprintln(out, "then waits:", w)
		}
		return err
	}
	logger := klog.FromContext(ctx)
	failures := 0
	for {
		res, err := s.Pass(ctx, group)
		if len(res.Steps) > 0 {
			if perr := balancer.PrintPlan(out, actions(res.Steps)); perr != nil {
				err = errors.Join(err, perr)
			}
		}
		wait := splitPoll
		switch {
		case err == nil && res.Done:
			release(logger, s, group)
			return nil
		case err == nil && !progress(res.Steps) && len(res.Stranded) > 0:
			// Nothing moves until a person replaces them: say so and stop.
			release(logger, s, group)
			return onRecord(logger, cloud, group, fmt.Errorf("split of %s stops: these instances stay in it, as AWS would not attach them to a per-zone group; replace them (drain their nodes, terminate the instances) and run split again: %s",
				group, strings.Join(res.Stranded, "; ")))
		case err == nil:
			failures = 0
			logger.Info("Split waits", "group", group, "for", strings.Join(res.Waiting, "; "))
		case errors.Is(err, split.ErrLocked) && !mayBeOurs(cloud, group, opts.Owner):
			// Another splitter holds the group: it carries the split on.
			// (A lock of this command's own, a claim made void by a slow
			// write, lapses: passes go on until they can claim it again.)
			return onRecord(logger, cloud, group, err)
		case errors.Is(err, split.ErrRefused) || ctx.Err() != nil:
			release(logger, s, group)
			return onRecord(logger, cloud, group, err)
		default:
			failures++
			wait = min(splitPoll<<min(failures-1, 10), splitMaxBackoff)
			if failures >= splitMaxFailures {
				if ids, known := recorded(cloud, group); known && len(ids) == 0 {
					release(logger, s, group)
					return fmt.Errorf("split of %s stops after %d failed passes in a row, with no batch on record; run it again to carry on: %w", group, failures, err)
				}
			}
			logger.Error(err, "Split pass failed; passing again", "group", group, "failedInARow", failures, "retryIn", wait)
		}
		select {
		case <-ctx.Done():
			release(logger, s, group)
			return onRecord(logger, cloud, group, fmt.Errorf("split of %s interrupted; run it again to carry on: %w", group, ctx.Err()))
		case <-splitClock.After(wait):
		}
	}
}

// onRecord returns err, and when the split of group has a batch on record
// (or it cannot tell), logs loudly and adds to err which instances may run
// in no group and what to run.
func onRecord(logger klog.Logger, cloud split.Cloud, group string, err error) error {
	ids, known := recorded(cloud, group)
	if known && len(ids) == 0 {
		return err
	}
	what := "a batch may be on record (the group could not be read to tell)"
	if known {
		what = "a batch is on record: " + strings.Join(ids, ",")
	}
	logger.Error(err, "SPLIT STOPPED WITH INSTANCES ON THE MOVE: detached instances run in no Auto Scaling group, outside cluster-autoscaler's view, until a split pass attaches them; run `az-balancer split "+group+"` again now",
		"group", group, "instances", ids)
	return fmt.Errorf("%w; %s: those instances may be detaching or in no Auto Scaling group until a split pass attaches them: run `az-balancer split %s` again now", err, what, group)
}

// mayBeOurs reports whether the split lock of group names owner, or cannot
// be read.
func mayBeOurs(cloud split.Cloud, group, owner string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gs, err := cloud.DescribeGroups(ctx, asg.Selector{Names: []string{group}})
	if err != nil {
		return true
	}
	if len(gs) == 0 {
		return false
	}
	f := strings.Fields(gs[0].Tags[split.TagLock])
	return len(f) > 0 && f[0] == owner
}

// recorded reads the instances the split of group has on record, and
// whether it could read them.
func recorded(cloud split.Cloud, group string) ([]string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gs, err := cloud.DescribeGroups(ctx, asg.Selector{Names: []string{group}})
	if err != nil || len(gs) == 0 {
		return nil, err == nil
	}
	return split.OnRecord(&gs[0]), true
}

// release drops the lock so that the loop or another `split` can carry on
// at once rather than after the lock lapses.
func release(logger klog.Logger, s *split.Splitter, group string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Release(ctx, group); err != nil {
		logger.Error(err, "Releasing the split lock; it lapses by itself", "group", group)
	}
}

// splitOptions are `split`'s options: the groups of the selector, and the
// balancer's own termination hook with the flags' settings for the per-zone
// groups, as `run --enforce=split` gives its splits.
func splitOptions(o *options.Options) split.Options {
	h := balancer.OwnHook("", o.HeartbeatTimeout)
	return split.Options{Selector: selector(o), Owner: split.NewOwner("az-balancer-split"), Hook: &h}
}

func actions(steps []split.Step) []balancer.Action {
	out := make([]balancer.Action, 0, len(steps))
	for _, s := range steps {
		out = append(out, balancer.Action{Target: s.Target, Verb: s.Verb, Detail: s.Detail})
	}
	return out
}

// progress reports whether a pass made a step that moved the split on: a
// step AWS refused and the split went on without (Warning) is no progress,
// and may repeat on every pass.
func progress(steps []split.Step) bool {
	for _, st := range steps {
		if st.Warning == "" {
			return true
		}
	}
	return false
}
