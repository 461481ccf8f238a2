package awstest_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/smithy-go"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestSetInstanceProtectionRejectsWholeCall pins what AWS does when one
// instance of a SetInstanceProtection call is not InService, EnteringStandby
// or Standby: the whole call fails with ValidationError "The instance <id> is
// not in InService or EnteringStandby or Standby." and no instance changes.
//
// API reference, SetInstanceProtection
// (https://docs.aws.amazon.com/AutoScaling/latest/APIReference/API_SetInstanceProtection.html)
// lists only the common errors for this case; the User Guide
// (ec2-auto-scaling-instance-protection) says "Instance scale-in protection
// starts when the instance state is InService", and the service answers an
// instance in any other state with the ValidationError above (the message
// AWS returns, as reported by callers that hit it on Terminating:Wait).
func TestSetInstanceProtectionRejectsWholeCall(t *testing.T) {
	ctx := context.Background()
	s, _, c := newEmulator(t)
	s.CreateGroup(awstest.GroupSpec{Name: "g", Zones: zones[:2], MaxSize: 10, InstanceType: "m5.large",
		Instances: map[string]int{zones[0]: 3, zones[1]: 1}})
	if err := c.PutLifecycleHook(ctx, asg.Hook{Group: "g", Name: "hold", Transition: asg.TransitionTerminating, HeartbeatTimeout: 60, DefaultResult: "CONTINUE"}); err != nil {
		t.Fatal(err)
	}
	held := s.AZRebalance()
	if len(held) != 1 {
		t.Fatalf("AZRebalance terminated %v, want one instance", held)
	}
	if i, _ := s.Instance(held[0]); i.LifecycleState != awstest.TerminatingWait {
		t.Fatalf("state %s, want %s", i.LifecycleState, awstest.TerminatingWait)
	}
	var all, inService []string
	for _, i := range s.GroupInstances("g") {
		all = append(all, i.ID)
		if i.LifecycleState == awstest.InService {
			inService = append(inService, i.ID)
		}
	}

	err := c.SetInstanceProtection(ctx, "g", all, true)
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "ValidationError" ||
		api.ErrorMessage() != "The instance "+held[0]+" is not in InService or EnteringStandby or Standby." {
		t.Fatalf("protecting %v with %s in %s: got %v, want the ValidationError naming it", all, held[0], awstest.TerminatingWait, err)
	}
	for _, id := range all {
		if i, _ := s.Instance(id); i.ProtectedFromScaleIn {
			t.Errorf("%s (%s) protected although the call was rejected", id, i.LifecycleState)
		}
	}

	if err := c.SetInstanceProtection(ctx, "g", inService, true); err != nil {
		t.Fatalf("protecting the InService instances %v: %v", inService, err)
	}
	for _, id := range inService {
		if i, _ := s.Instance(id); !i.ProtectedFromScaleIn {
			t.Errorf("%s not protected", id)
		}
	}
	// Removing protection is refused the same way.
	err = c.SetInstanceProtection(ctx, "g", append(inService, held[0]), false)
	if !errors.As(err, &api) || !strings.Contains(api.ErrorMessage(), held[0]) {
		t.Fatalf("unprotecting with %s held: got %v, want a ValidationError naming it", held[0], err)
	}
	for _, id := range inService {
		if i, _ := s.Instance(id); !i.ProtectedFromScaleIn {
			t.Errorf("%s lost its protection although the call was rejected", id)
		}
	}
}
