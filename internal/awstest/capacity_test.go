package awstest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/google/go-cmp/cmp"

	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestRefuseLaunches is the night of incident 7 in the emulator: a zone short
// of capacity while the group scales out, then recovering, then AZRebalance.
func TestRefuseLaunches(t *testing.T) {
	ctx := context.Background()
	s, _, c := newEmulator(t)
	s.CreateGroup(awstest.GroupSpec{Name: "cassandra", Zones: zones, MaxSize: 12, InstanceType: "i3.xlarge"})
	s.RefuseLaunches(zones[2], true)
	if _, err := rawClient(s).UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String("cassandra"), DesiredCapacity: aws.Int32(12)}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{zones[0]: 6, zones[1]: 6}, zoneCounts(t, c, "cassandra")); diff != "" {
		t.Fatalf("scale-out with zone c short (-want, +got):\n%s", diff)
	}
	failed := 0
	for _, a := range s.Activities() {
		if a.Status == "Failed" {
			failed++
			if !strings.Contains(a.Description, zones[2]) || !strings.Contains(a.Cause, "InsufficientInstanceCapacity") {
				t.Errorf("failed activity %+v, want a launch in %s refused for capacity", a, zones[2])
			}
		}
	}
	if failed != 1 {
		t.Errorf("%d failed launch activities, want 1 while the zone stays short", failed)
	}

	// Still short: AZRebalance cannot launch in c, so it terminates nothing.
	if got := s.AZRebalance(); len(got) != 0 {
		t.Fatalf("AZRebalance terminated %v while zone c is short", got)
	}

	// The zone recovers: AZRebalance launches in c and terminates in a and b.
	s.RefuseLaunches(zones[2], false)
	victims := s.AZRebalance()
	if len(victims) != 4 {
		t.Errorf("AZRebalance terminated %d instances, want 4 (6+6+0 -> 4+4+4)", len(victims))
	}
	if diff := cmp.Diff(map[string]int{zones[0]: 4, zones[1]: 4, zones[2]: 4}, zoneCounts(t, c, "cassandra")); diff != "" {
		t.Errorf("after the zone recovered (-want, +got):\n%s", diff)
	}
	for _, id := range victims {
		if i, _ := s.Instance(id); i.EC2State != "terminated" || i.Zone == zones[2] {
			t.Errorf("victim %s is %s in %s, want terminated in a or b", id, i.EC2State, i.Zone)
		}
	}
}

// TestRefuseLaunchesEveryZone: with no zone accepting launches the group
// stays below its desired capacity instead of looping.
func TestRefuseLaunchesEveryZone(t *testing.T) {
	s, _, c := newEmulator(t)
	s.CreateGroup(awstest.GroupSpec{Name: "web", Zones: zones[:2], MaxSize: 4, InstanceType: "m5.large"})
	s.RefuseLaunches(zones[0], true)
	s.RefuseLaunches(zones[1], true)
	if _, err := rawClient(s).UpdateAutoScalingGroup(context.Background(), &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String("web"), DesiredCapacity: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	if got := zoneCounts(t, c, "web"); len(got) != 0 {
		t.Errorf("launched %v with every zone short", got)
	}
}
