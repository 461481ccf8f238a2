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
	"github.com/ballast-k8s/ballast/internal/balancer"
	"github.com/ballast-k8s/ballast/internal/split"
)

// splitClock paces the passes of `split`; tests replace it.
var splitClock clock.WithTicker = clock.RealClock{}

// splitPoll is the time between two passes of `split` while it waits for
// instances to detach or for its lock to settle.
const splitPoll = 5 * time.Second

// runSplit runs `az-balancer split`: passes until the split is done, printing
// each pass's steps; with dryRun, the steps of the next pass only. It holds
// the group's split lock (internal/split/lock.go), so it never interleaves
// with `run --enforce=split` or another `split`, and releases it on the way out.
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
	for {
		res, err := s.Pass(ctx, group)
		if len(res.Steps) > 0 {
			if perr := balancer.PrintPlan(out, actions(res.Steps)); perr != nil {
				err = errors.Join(err, perr)
			}
		}
		if err != nil || res.Done {
			if err != nil && !errors.Is(err, split.ErrLocked) {
				release(logger, s, group)
			}
			return err
		}
		if len(res.Steps) == 0 && len(res.Stranded) > 0 {
			// Nothing moves until a person replaces them: say so and stop.
			release(logger, s, group)
			return fmt.Errorf("split of %s stops: these instances stay in it, as AWS would not attach them to a per-zone group; replace them (drain their nodes, terminate the instances) and run split again: %s",
				group, strings.Join(res.Stranded, "; "))
		}
		logger.Info("Split waits", "group", group, "for", strings.Join(res.Waiting, "; "))
		select {
		case <-ctx.Done():
			release(logger, s, group)
			return fmt.Errorf("split of %s interrupted; run it again to carry on: %w", group, ctx.Err())
		case <-splitClock.After(splitPoll):
		}
	}
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
