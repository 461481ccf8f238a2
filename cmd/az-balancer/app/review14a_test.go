package app

import (
	"net/http"
	"testing"
	"time"

	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestReview14aSplitCommandExitsOnAThrottledPassWithTheBatchDetached
// (review 14a): `az-balancer split` returns on the first pass that fails,
// whatever the failure (runSplit: "if err != nil || res.Done { ... return
// err }"), and releases its lock. A failure that AWS really gives and that
// the next pass would get past (DescribeAutoScalingGroups throttled past
// the SDK's retries: "Throttling: Rate exceeded", a 500 InternalFailure)
// on the pass after a batch was detached ends the command with the batch
// Detaching, then detached: nothing attaches it afterwards, since `run`
// makes split passes only with --enforce=split, and the command is the way
// operators split with the loop left at --enforce=suspend. The instances
// run in no group, outside cluster-autoscaler's view, with their data,
// until a person reruns the command. The split package says why passes
// are made "again while the result is not Done: after a failure it carries
// on where the last pass stopped"; the command should, for the failures a
// later pass gets past, at least while a batch is in flight.
func TestReview14aSplitCommandExitsOnAThrottledPassWithTheBatchDetached(t *testing.T) {
	clk, emu := splitWorld(t)
	zones := []string{"us-east-1a", "us-east-1b"}
	emu.CreateGroup(awstest.GroupSpec{Name: "db", Zones: zones, MaxSize: 4, InstanceType: "m5.large",
		Tags: map[string]string{"k8s.io/cluster-autoscaler/enabled": "true", "k8s.io/cluster-autoscaler/prod": "owned"}, Instances: map[string]int{zones[0]: 2, zones[1]: 1}})
	done := make(chan error, 1)
	go func() {
		done <- execute("split", "db", "--cluster-name=prod", "--region=us-east-1", "--aws-endpoint="+emu.URL)
	}()
	injected := false
	err := stepWhileWaiting(t, clk, done, 2*time.Minute, 5*time.Second, func() {
		if !injected && emu.Counts()["DetachInstances"] > 0 {
			// The next pass's first read is throttled past the SDK's retries.
			injected = true
			emu.Inject(awstest.Fault{Service: "autoscaling", Action: "DescribeAutoScalingGroups", Code: "Throttling", Status: http.StatusBadRequest, Times: 5})
		}
	})
	if !injected {
		t.Fatalf("the command returned (%v) before any instance was detached", err)
	}
	t.Logf("split returned: %v", err)
	clk.Step(time.Hour) // the detach completes
	for _, i := range emu.AllInstances() {
		if i.EC2State == "running" && i.Group == "" {
			t.Errorf("instance %s runs in no group (%s) after `split` returned on one throttled pass: nothing attaches it until a person reruns the command", i.ID, i.LifecycleState)
		}
	}
}
