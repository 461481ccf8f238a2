package balancer

import (
	"testing"

	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestHeldWhileNeitherGroupsNorInstancesCanBeDescribed: with
// DescribeAutoScalingGroups and DescribeAutoScalingInstances both failing
// (one account-wide throttling bucket), after a restart or for a termination
// that starts meanwhile, the balancer knows a held instance's group only from
// its volume (ballast.k8s.io/group, recorded while the group was described),
// and heartbeats it there; otherwise the hook's CONTINUE terminates it with
// its bound local volume at the heartbeat timeout (API_LifecycleHook,
// HeartbeatTimeout: "If the lifecycle hook times out, Amazon EC2 Auto
// Scaling performs the action that you specified in the DefaultResult
// property").
func TestHeldWhileNeitherGroupsNorInstancesCanBeDescribed(t *testing.T) {
	for _, tc := range restartCases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, 2, nil)
			if g := w.volume("pv-0").Annotations[AnnotationGroup]; g != "cassandra" {
				t.Fatalf("pv-0 records group %q, want cassandra", g)
			}
			w.terminateWhileFailing(tc.restart, "DescribeAutoScalingGroups", "DescribeAutoScalingInstances")
			if got := w.lifecycleState(w.ids[0]); got != awstest.TerminatingWait {
				t.Errorf("instance %s, whose node holds the bound local volume pv-0, is %s after both describes failed for 10 minutes, want %s",
					w.ids[0], got, awstest.TerminatingWait)
			}
			if got := w.lifecycleState(w.ids[1]); got != "InService" {
				t.Errorf("instance %s, heartbeated blindly, is %s, want InService", w.ids[1], got)
			}
		})
	}
}
