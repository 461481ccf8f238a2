package awstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestReview14aUpdateGroupSizesMovesTheDesiredCapacity (review 14a): the
// emulator refuses an UpdateAutoScalingGroup whose new MinSize is above the
// desired capacity, or whose new MaxSize is below it ("desired capacity %d
// must be between min %d and max %d"). AWS does not
// (API_UpdateAutoScalingGroup): "If you specify a new value for MinSize
// without specifying a value for DesiredCapacity, and the new MinSize is
// larger than the current size of the group, this sets the group's
// DesiredCapacity to the new MinSize value. If you specify a new value for
// MaxSize without specifying a value for DesiredCapacity, and the new
// MaxSize is smaller than the current size of the group, there's an
// implicit call to SetDesiredCapacity to set the size of the group to the
// new value of MaxSize." So AWS launches (or terminates) where the emulator
// fails the call: the split's step 6 (a per-zone group's minimum set to
// min(ceil(min/n), instances in the zone), counting instances whose
// termination lowered the desired capacity already) launches an instance
// in AWS, which "setting it launches nothing" says never happens, while in
// the emulator the pass fails; neither is what the tests can see.
func TestReview14aUpdateGroupSizesMovesTheDesiredCapacity(t *testing.T) {
	ctx := context.Background()
	clk := clocktesting.NewFakeClock(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	s := awstest.NewServer(clk)
	t.Cleanup(s.Close)
	s.CreateGroup(awstest.GroupSpec{Name: "g", Zones: []string{"us-east-1a"}, MinSize: 0, MaxSize: 5, InstanceType: "m5.large",
		Instances: map[string]int{"us-east-1a": 2}})
	c := rawClient(s)
	if _, err := c.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g"), MinSize: aws.Int32(3)}); err != nil {
		t.Errorf("UpdateAutoScalingGroup MinSize=3 over desired 2: %v; AWS sets the desired capacity to 3", err)
	} else if g, _ := s.Group("g"); g.Desired != 3 {
		t.Errorf("desired %d after MinSize=3 over desired 2, want 3", g.Desired)
	}
	if _, err := c.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g"), MinSize: aws.Int32(0), MaxSize: aws.Int32(1)}); err != nil {
		t.Errorf("UpdateAutoScalingGroup MaxSize=1 under the desired capacity: %v; AWS sets the desired capacity to 1", err)
	} else if g, _ := s.Group("g"); g.Desired != 1 {
		t.Errorf("desired %d after MaxSize=1, want 1", g.Desired)
	}
}
