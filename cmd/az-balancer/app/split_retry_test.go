package app

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

// denyHooks makes every DescribeLifecycleHooks of group fail with
// AccessDenied, which the SDK does not retry: each pass fails at once.
func denyHooks(emu *awstest.Server, group string) {
	emu.Inject(awstest.Fault{Service: "autoscaling", Action: "DescribeLifecycleHooks", Group: group, Code: "AccessDenied", Status: http.StatusForbidden, Times: 100000})
}

// runSplitAsync runs runSplit over the emulator in the background.
func runSplitAsync(ctx context.Context, t *testing.T, emu *awstest.Server, group string) <-chan error {
	t.Helper()
	cloud := emu.NewClient(t, nil)
	done := make(chan error, 1)
	go func() {
		done <- runSplit(ctx, cloud, split.Options{Selector: asg.Selector{Names: []string{group}}, Owner: "test-split"}, group, false, &strings.Builder{})
	}()
	return done
}

// TestSplitCommandGivesUpOnFailingPassesWithNothingOnRecord: passes that fail
// for good (here AccessDenied) before any batch is recorded end the command
// after splitMaxFailures of them in a row, with the backoff between them
// bounded, and the lock released.
func TestSplitCommandGivesUpOnFailingPassesWithNothingOnRecord(t *testing.T) {
	clk, emu := splitWorld(t)
	zones := []string{"us-east-1a", "us-east-1b"}
	emu.CreateGroup(awstest.GroupSpec{Name: "db", Zones: zones, MaxSize: 4, InstanceType: "m5.large", Instances: map[string]int{zones[0]: 1, zones[1]: 1}})
	denyHooks(emu, "db")
	start := clk.Now()
	err := stepUntilDone(t, clk, runSplitAsync(context.Background(), t, emu, "db"))
	if err == nil || !strings.Contains(err.Error(), "failed passes in a row, with no batch on record") || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("split: %v, want it to give up naming the failure", err)
	}
	if n := emu.Counts()["DescribeLifecycleHooks"]; n != splitMaxFailures {
		t.Errorf("%d passes, want %d", n, splitMaxFailures)
	}
	// stepUntilDone steps a minute at a time: one step per wait, as every
	// wait is at most splitMaxBackoff (2 minutes: two steps).
	if took := clk.Since(start); took > time.Duration(splitMaxFailures)*splitMaxBackoff {
		t.Errorf("gave up after %s, more than %d bounded waits", took, splitMaxFailures)
	}
	if m := emu.MutatingCalls(); len(m) != 0 {
		t.Errorf("%d writes, want none: %v", len(m), m)
	}
}

// TestSplitCommandSaysWhichInstancesAreOnTheMove: a command that must stop
// (here interrupted) while passes fail after a batch was detached does not
// give up on its own, and when it stops, its error names the batch's
// instances and what to run.
func TestSplitCommandSaysWhichInstancesAreOnTheMove(t *testing.T) {
	clk, emu := splitWorld(t)
	zones := []string{"us-east-1a", "us-east-1b"}
	emu.CreateGroup(awstest.GroupSpec{Name: "db", Zones: zones, MaxSize: 4, InstanceType: "m5.large", Instances: map[string]int{zones[0]: 2, zones[1]: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runSplitAsync(ctx, t, emu, "db")
	denied, steps := false, 0
	err := stepWhileWaiting(t, clk, done, time.Minute, time.Minute, func() {
		if !denied && emu.Counts()["DetachInstances"] > 0 {
			denied = true
			denyHooks(emu, "db")
		}
		if denied {
			if steps++; steps > 3*splitMaxFailures {
				cancel() // far more failed passes than the bound: still passing
			}
		}
	})
	if !denied {
		t.Fatalf("split returned (%v) before any instance was detached", err)
	}
	if steps <= 3*splitMaxFailures {
		t.Errorf("split gave up after %d waits with a batch on record: %v", steps, err)
	}
	g, _ := emu.Group("db")
	batch := split.OnRecord(&asg.Group{Tags: g.Tags})
	if len(batch) == 0 {
		t.Fatalf("setup: no batch on record (tags %v)", g.Tags)
	}
	for _, id := range batch {
		if err == nil || !strings.Contains(err.Error(), id) {
			t.Errorf("split: %v, want an error naming %s, on record", err, id)
		}
	}
	if err == nil || !strings.Contains(err.Error(), "az-balancer split db") {
		t.Errorf("split: %v, want it to say what to run", err)
	}
}
