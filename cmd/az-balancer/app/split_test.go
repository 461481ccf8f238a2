package app

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/wait"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/balancer"
	"github.com/ballast-k8s/ballast/internal/split"
)

func TestSplitAndEnforceFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"run", "--cluster-name=x", "--enforce=merge"}, `--enforce must be one of suspend, split, got "merge"`},
		{[]string{"plan", "--cluster-name=x", "--enforce="}, "--enforce must be one of"},
		{[]string{"split", "--cluster-name=x"}, "split takes one group name, got 0 arguments"},
		{[]string{"split", "a", "b", "--cluster-name=x"}, "got 2 arguments"},
		{[]string{"run", "extra", "--cluster-name=x"}, "run takes no arguments"},
		{[]string{"run", "--cluster-name=x", "--dry-run"}, "--dry-run is for split"},
	} {
		err := execute(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("run(%q): %v, want an error containing %q", tc.args, err, tc.wantErr)
		}
	}
}

// TestSplitCommand runs `az-balancer split` against the emulator: the dry
// run writes nothing; the split waits, pass after pass, while the instances
// detach, and leaves one group per zone; while the loop holds the group's
// split lock, the command refuses to go on.
func TestSplitCommand(t *testing.T) {
	clk, emu := splitWorld(t)
	zones := []string{"us-east-1a", "us-east-1b"}
	emu.CreateGroup(awstest.GroupSpec{Name: "db", Zones: zones, MaxSize: 4, InstanceType: "m5.large",
		Tags: map[string]string{"k8s.io/cluster-autoscaler/enabled": "true", "k8s.io/cluster-autoscaler/prod": "owned"}, Instances: map[string]int{zones[0]: 2, zones[1]: 1}})
	emu.CreateGroup(awstest.GroupSpec{Name: "held", Zones: zones, MaxSize: 4, InstanceType: "m5.large",
		Tags:      map[string]string{split.TagLock: "az-balancer-run@pod/1 " + clk.Now().UTC().Format(time.RFC3339) + " " + clk.Now().Add(time.Hour).UTC().Format(time.RFC3339)},
		Instances: map[string]int{zones[0]: 1, zones[1]: 1}})
	args := []string{"split", "db", "--cluster-name=prod", "--region=us-east-1", "--aws-endpoint=" + emu.URL}

	if err := execute(append(args, "--dry-run")...); err != nil {
		t.Fatal(err)
	}
	if m := emu.MutatingCalls(); len(m) != 0 {
		t.Fatalf("split --dry-run made %d writes", len(m))
	}
	done := make(chan error, 1)
	go func() { done <- execute(args...) }()
	err := stepUntilDone(t, clk, done)
	if err != nil {
		t.Fatal(err)
	}
	for _, z := range zones {
		if g, ok := emu.Group("db-" + z); !ok || len(emu.GroupInstances("db-"+z)) != int(g.Desired) || g.Desired == 0 {
			t.Errorf("group db-%s: %+v, want it holding the zone's instances", z, g)
		}
	}
	if n := len(emu.GroupInstances("db")); n != 0 {
		t.Errorf("db still holds %d instances", n)
	}
	for _, i := range emu.AllInstances() {
		if i.Group == "" {
			t.Errorf("instance %s is in no group", i.ID)
		}
	}

	emu.Reset()
	err = execute([]string{"split", "held", "--cluster-name=prod", "--region=us-east-1", "--aws-endpoint=" + emu.URL}...)
	if !errors.Is(err, split.ErrLocked) || !strings.Contains(err.Error(), "held by az-balancer-run@pod/1") {
		t.Errorf("split of a group the loop holds: %v, want ErrLocked naming the loop", err)
	}
	if m := emu.MutatingCalls(); len(m) != 0 {
		t.Errorf("split of a held group made %d writes", len(m))
	}
}

// TestSplitCommandStopsOnStrandedInstances: `split` of a group whose
// instances AWS would not attach again (their AMI was deregistered) detaches
// nothing and, once nothing else can move, exits with an error that names
// them, rather than polling forever.
func TestSplitCommandStopsOnStrandedInstances(t *testing.T) {
	clk, emu := splitWorld(t)
	zones := []string{"us-east-1a", "us-east-1b"}
	ids := emu.CreateGroup(awstest.GroupSpec{Name: "db", Zones: zones, MaxSize: 4, InstanceType: "m5.large", ImageID: "ami-old",
		Tags: map[string]string{"k8s.io/cluster-autoscaler/enabled": "true", "k8s.io/cluster-autoscaler/prod": "owned"}, Instances: map[string]int{zones[0]: 1, zones[1]: 1}})
	emu.DeregisterImage("ami-old")
	done := make(chan error, 1)
	go func() {
		done <- execute("split", "db", "--cluster-name=prod", "--region=us-east-1", "--aws-endpoint="+emu.URL)
	}()
	err := stepUntilDone(t, clk, done)
	if err == nil || !strings.Contains(err.Error(), ids[zones[0]][0]) || !strings.Contains(err.Error(), "no longer exists") {
		t.Errorf("split: %v, want an error naming the instances whose AMI is gone", err)
	}
	if n := emu.Counts()["DetachInstances"]; n != 0 {
		t.Errorf("%d DetachInstances calls, want none", n)
	}
	if g, _ := emu.Group("db"); g.Tags[split.TagLock] != "" {
		t.Errorf("lock %q left behind", g.Tags[split.TagLock])
	}
}

// splitWorld: an emulator on a fake clock that also paces `split`, and an
// SDK default chain fed from the environment only.
func splitWorld(t *testing.T) (*clocktesting.FakeClock, *awstest.Server) {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Now())
	emu := awstest.NewServer(clk)
	t.Cleanup(emu.Close)
	old := splitClock
	t.Cleanup(func() { splitClock = old })
	splitClock = clk
	t.Setenv("AWS_ACCESS_KEY_ID", "AKID")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	return clk, emu
}

// stepUntilDone moves clk on whenever the command waits for its next pass,
// until the command returns on done; it returns the command's error.
func stepUntilDone(t *testing.T, clk *clocktesting.FakeClock, done <-chan error) error {
	t.Helper()
	return stepWhileWaiting(t, clk, done, time.Minute, time.Minute, nil)
}

// stepWhileWaiting moves clk on by step whenever the command waits for its
// next pass, after running between (when not nil), until the command
// returns on done; it fails the test when the command has not returned
// within, and returns the command's error.
func stepWhileWaiting(t *testing.T, clk *clocktesting.FakeClock, done <-chan error, within, step time.Duration, between func()) error {
	t.Helper()
	var err error
	if perr := wait.PollUntilContextTimeout(context.Background(), time.Millisecond, within, true, func(context.Context) (bool, error) {
		select {
		case err = <-done:
			return true, nil
		default:
		}
		if !clk.HasWaiters() {
			return false, nil
		}
		if between != nil {
			between()
		}
		clk.Step(step)
		return false, nil
	}); perr != nil {
		t.Fatalf("the command did not return: %v", perr)
	}
	return err
}

// TestSplitCommandGivesTheZoneGroupsTheBalancersHook: `split` gives the
// per-zone groups the balancer's own termination hook with the settings its
// flags name (--lifecycle-heartbeat-timeout), as `run --enforce=split` does
// (balancer.Options.HeartbeatTimeout), never the split group's older copy of
// it: ensureHook leaves a group's hook alone between resyncs, so a copy with
// a shorter timeout would cut a held termination's global timeout
// (API_LifecycleHook, GlobalTimeout: "172800 seconds (48 hours) or 100
// times HeartbeatTimeout, whichever is smaller").
func TestSplitCommandGivesTheZoneGroupsTheBalancersHook(t *testing.T) {
	ctx := context.Background()
	clk, emu := splitWorld(t)
	zones := []string{"us-east-1a", "us-east-1b"}
	emu.CreateGroup(awstest.GroupSpec{Name: "db", Zones: zones, MaxSize: 4, InstanceType: "m5.large",
		Tags: map[string]string{"k8s.io/cluster-autoscaler/enabled": "true", "k8s.io/cluster-autoscaler/prod": "owned"}, Instances: map[string]int{zones[0]: 1, zones[1]: 1}})
	// The hook as a balancer of before an upgrade put it: 300 s.
	if err := emu.NewClient(t, nil).PutLifecycleHook(ctx, asg.Hook{Group: "db", Name: balancer.HookName, Transition: asg.TransitionTerminating,
		HeartbeatTimeout: 300, DefaultResult: asg.ResultContinue}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- execute("split", "db", "--cluster-name=prod", "--region=us-east-1", "--aws-endpoint="+emu.URL, "--lifecycle-heartbeat-timeout=40m")
	}()
	if err := stepUntilDone(t, clk, done); err != nil {
		t.Fatal(err)
	}
	for _, z := range zones {
		want := []awstest.Hook{{Name: balancer.HookName, Transition: asg.TransitionTerminating, DefaultResult: asg.ResultContinue, HeartbeatTimeout: 2400, GlobalTimeout: 172800}}
		if diff := cmp.Diff(want, emu.Hooks("db-"+z)); diff != "" {
			t.Errorf("hooks of db-%s (-want, +got):\n%s", z, diff)
		}
	}
}
