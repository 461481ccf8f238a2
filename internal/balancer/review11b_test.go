package balancer

import (
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestHeldWhenTheGroupLeavesDiscoveryAcrossARestart (review 11b, 3685baf):
// heldUndiscovered keeps holding a termination whose group left discovery,
// but it finds such terminations only in b.held, the previous loop's
// in-memory set. A balancer restarted (leader failover, upgrade, OOM kill)
// while the group is out of discovery starts with an empty set: nothing
// describes the group, nothing heartbeats the instance, and the balancer's
// own hook, still on the group, lets it go at its timeout with
// DefaultResult CONTINUE (API LifecycleHook, HeartbeatTimeout: "If the
// lifecycle hook times out, Amazon EC2 Auto Scaling performs the action that
// you specified in the DefaultResult property"): the instance is terminated
// with its bound local volume. The volumes record their instance
// (ballast.k8s.io/instance-id), and DescribeAutoScalingInstances answers for
// an instance in any group ("Gets information about the Auto Scaling
// instances in the account and Region"), so the balancer can find it again.
func TestHeldWhenTheGroupLeavesDiscoveryAcrossARestart(t *testing.T) {
	w := newWorld(t, 2, nil)
	w.startTermination(w.ids[0])
	w.reconcile()
	if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
		t.Fatalf("instance %s is %s after a loop, want held", w.ids[0], got)
	}
	if _, err := rawASG(w.emu).CreateOrUpdateTags(w.ctx, &autoscaling.CreateOrUpdateTagsInput{Tags: []astypes.Tag{{
		ResourceId: awssdk.String("cassandra"), ResourceType: awssdk.String("auto-scaling-group"),
		Key: awssdk.String(asg.TagAutoDiscoveryEnabled), Value: awssdk.String("True"), PropagateAtLaunch: awssdk.Bool(false),
	}}}); err != nil {
		t.Fatal(err)
	}
	w.restart()
	w.loopPastTimeout()
	if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
		t.Errorf("instance %s, whose node holds a bound local volume, is %s after a restart while its group's enabled tag read \"True\", want %s",
			w.ids[0], got, awstest.TerminatingWait)
	}
}
