package balancer

import (
	"net/http"
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
	for _, restart := range []bool{true, false} {
		t.Run(map[bool]string{true: "held, then a restart", false: "termination starts while the describes fail"}[restart], func(t *testing.T) {
			w := newWorld(t, 2, nil)
			if g := w.volume("pv-0").Annotations[AnnotationGroup]; g != "cassandra" {
				t.Fatalf("pv-0 records group %q, want cassandra", g)
			}
			if restart {
				w.startTermination(w.ids[0])
				w.reconcile()
				w.restart()
			}
			for _, a := range []string{"DescribeAutoScalingGroups", "DescribeAutoScalingInstances"} {
				w.emu.Inject(awstest.Fault{Service: "autoscaling", Action: a, Code: "Throttling", Status: http.StatusBadRequest, Times: 1000})
			}
			if !restart {
				w.startTermination(w.ids[0])
			}
			w.loopPastTimeout()
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
