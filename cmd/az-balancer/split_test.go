package main

import (
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ballast-k8s/ballast/internal/awstest"
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
		err := run(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("run(%q): %v, want an error containing %q", tc.args, err, tc.wantErr)
		}
	}
}

// TestSplitCommand runs `az-balancer split` against the emulator: the dry
// run writes nothing, the split leaves one group per zone.
func TestSplitCommand(t *testing.T) {
	emu := awstest.NewServer(clocktesting.NewFakeClock(time.Now()))
	t.Cleanup(emu.Close)
	zones := []string{"us-east-1a", "us-east-1b"}
	emu.CreateGroup(awstest.GroupSpec{Name: "db", Zones: zones, MaxSize: 4, InstanceType: "m5.large",
		Tags: map[string]string{"k8s.io/cluster-autoscaler/enabled": "true", "k8s.io/cluster-autoscaler/prod": "owned"}, Instances: map[string]int{zones[0]: 2, zones[1]: 1}})
	t.Setenv("AWS_ACCESS_KEY_ID", "AKID")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	args := []string{"split", "db", "--cluster-name=prod", "--region=us-east-1", "--aws-endpoint=" + emu.URL}

	if err := run(append(args, "--dry-run")); err != nil {
		t.Fatal(err)
	}
	if m := emu.MutatingCalls(); len(m) != 0 {
		t.Fatalf("split --dry-run made %d writes", len(m))
	}
	if err := run(args); err != nil {
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
}
