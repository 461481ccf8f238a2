package awstest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
)

// TestCreateAutoScalingGroupNameLength (review 11d) pins API_CreateAutoScalingGroup,
// AutoScalingGroupName: "Length Constraints: Minimum length of 1. Maximum
// length of 255." A longer name is refused with a ValidationError.
func TestCreateAutoScalingGroupNameLength(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newEmulator(t)
	create := func(name string) error {
		_, err := rawClient(s).CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
			AutoScalingGroupName: aws.String(name), MinSize: aws.Int32(0), MaxSize: aws.Int32(1),
			AvailabilityZones: zones[:1], LaunchTemplate: nil})
		return err
	}
	if err := create(strings.Repeat("g", 255)); err != nil && strings.Contains(err.Error(), "length") {
		t.Fatalf("a 255-character name is allowed: %v", err)
	}
	wantValidation(t, create(strings.Repeat("g", 256)), "255")
}
