package balancer

import (
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"

	"github.com/ballast-k8s/ballast/internal/aws"
	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestHeldWhenTheGroupLeavesDiscovery (review 11): a termination held
// because the instance's node holds a bound local volume is dropped from the
// held set as soon as its group is no longer discovered: an operator takes
// the group out of cluster-autoscaler (enabled=false), or mistypes the tag
// (True). lifecycleActions walks only the discovered groups and
// b.held.replace drops the rest, so nothing heartbeats the instance and the
// balancer's own hook, still on the group, lets it go at its timeout with
// DefaultResult CONTINUE (API LifecycleHook, HeartbeatTimeout: "If the
// lifecycle hook times out, Amazon EC2 Auto Scaling performs the action that
// you specified in the DefaultResult property"). A tag is bad input: it must never
// let an instance with a bound local volume be terminated. (The shipped IAM
// policy also denies the heartbeat there: its condition requires
// enabled=true on RecordLifecycleActionHeartbeat.)
func TestHeldWhenTheGroupLeavesDiscovery(t *testing.T) {
	w := newWorld(t, 2, nil)
	w.startTermination(w.ids[0])
	w.reconcile()
	if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
		t.Fatalf("instance %s is %s after a loop, want held", w.ids[0], got)
	}
	if _, err := rawASG(w.emu).CreateOrUpdateTags(w.ctx, &autoscaling.CreateOrUpdateTagsInput{Tags: []astypes.Tag{{
		ResourceId: awssdk.String("cassandra"), ResourceType: awssdk.String("auto-scaling-group"),
		Key: awssdk.String(aws.TagAutoDiscoveryEnabled), Value: awssdk.String("True"), PropagateAtLaunch: awssdk.Bool(false),
	}}}); err != nil {
		t.Fatal(err)
	}
	w.loopPastTimeout()
	if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
		t.Errorf("instance %s, whose node holds a bound local volume, is %s once its group's enabled tag read \"True\", want %s",
			w.ids[0], got, awstest.TerminatingWait)
	}
}
