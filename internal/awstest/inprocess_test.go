package awstest_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestInProcessAnswersAsLoopback: the in-process transport the balancer's
// unit tests use is the same emulator, not a kinder one. One script of calls
// (pagination, whole-call rejection of protection on a Detaching instance,
// retried throttling, throttling beyond the retries, a one-shot 5xx on a
// single-attempt write, an EKS error code) runs over each transport; the
// answers, the error codes and the emulator's call logs must be identical.
func TestInProcessAnswersAsLoopback(t *testing.T) {
	script := func(t *testing.T, options func(*awstest.Server) asg.Options) []string {
		ctx := context.Background()
		clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		s := awstest.NewServer(clk)
		t.Cleanup(s.Close)
		c, err := asg.New(ctx, options(s))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		record := func(step string, v any, err error) {
			out = append(out, fmt.Sprintf("%s: %v code=%q", step, v, code(err)))
		}
		// More groups than one page of DescribeAutoScalingGroups holds.
		for i := range 120 {
			s.CreateGroup(awstest.GroupSpec{Name: fmt.Sprintf("g%03d", i), Zones: zones[:2], MaxSize: 10, InstanceType: "m5.large",
				Tags: map[string]string{"k8s.io/cluster-autoscaler/enabled": "true", "k8s.io/cluster-autoscaler/c": "owned"}, Instances: map[string]int{zones[0]: 2, zones[1]: 1}})
		}
		gs, err := c.DescribeGroups(ctx, asg.AutoDiscovery("c"))
		record("groups", len(gs), err)
		ids := make([]string, 0, 3)
		for _, i := range gs[0].Instances {
			ids = append(ids, i.ID)
		}
		record("detach", ids[0], c.DetachInstances(ctx, gs[0].Name, ids[:1]))
		record("protect with a Detaching instance", ids, c.SetInstanceProtection(ctx, gs[0].Name, ids, true))
		s.Inject(awstest.Throttling(2)...)
		record("protect after throttling", ids[1:], c.SetInstanceProtection(ctx, gs[0].Name, ids[1:], true))
		s.Inject(awstest.Throttling(10)...)
		_, err = c.DescribeInstances(ctx, ids)
		record("throttled beyond the retries", nil, err)
		calls := s.Calls()
		s.Reset() // the throttling left over
		s.Inject(awstest.Fault{Action: "CreateOrUpdateTags", Code: "InternalFailure", Status: http.StatusInternalServerError})
		record("single-attempt write on a 5xx", nil, c.SetGroupTags(asg.SingleAttempt(ctx), gs[1].Name, map[string]string{"k": "v"}))
		_, err = c.DescribeNodegroup(ctx, "cluster", "missing")
		record("unknown node group", nil, err)
		gs, err = c.DescribeGroups(ctx, asg.Selector{Names: []string{gs[0].Name}})
		for _, i := range gs[0].Instances {
			out = append(out, fmt.Sprintf("instance %s %s protected=%t", i.ID, i.LifecycleState, i.ProtectedFromScaleIn))
		}
		record("group", len(gs), err)
		for _, call := range withoutRetriedReads(append(calls, s.Calls()...)) {
			out = append(out, fmt.Sprintf("call %s %s %q", call.Service, call.Action, call.Code))
		}
		return out
	}
	loopback := script(t, (*awstest.Server).ClientOptions)
	inProcess := script(t, (*awstest.Server).InProcessClientOptions)
	if diff := cmp.Diff(loopback, inProcess); diff != "" {
		t.Errorf("in-process transcript differs from loopback (-loopback, +in-process):\n%s", diff)
	}
	// The script exercises what it claims to: a whole-call rejection and
	// both fates of throttling.
	for _, want := range []string{
		`protect with a Detaching instance: [`,
		`throttled beyond the retries: <nil> code="RequestLimitExceeded"`,
		`single-attempt write on a 5xx: <nil> code="InternalFailure"`,
	} {
		found := false
		for _, l := range loopback {
			if len(l) >= len(want) && l[:len(want)] == want {
				found = true
			}
		}
		if !found {
			t.Errorf("transcript has no line starting %q:\n%v", want, loopback)
		}
	}
}
