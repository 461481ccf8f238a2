package awstest

import (
	"net/url"
	"strconv"
	"strings"
	"time"
)

// What the emulator models of the calls cluster-autoscaler makes, from the
// Amazon EC2 Auto Scaling API reference and User Guide:
//
//   - SetDesiredCapacity (API_SetDesiredCapacity) "Sets the size of the
//     specified Auto Scaling group"; "The desired capacity must be equal to or
//     greater than the minimum group size, and equal to or less than the
//     maximum group size" (asg-capacity-limits), else ValidationError "New
//     SetDesiredCapacity value N is above max value M for the
//     AutoScalingGroup." (or "below min value"). A larger value launches
//     instances, spread over the group's zones (the group "balances instances
//     across all Availability Zones"); a smaller one terminates instances by
//     the termination policy, skipping the instances protected from scale-in
//     (ec2-auto-scaling-instance-protection). HonorCooldown=true while the
//     group's cooldown (DefaultCooldown, 300 s) runs after its last scaling
//     activity fails with ScalingActivityInProgress.
//   - TerminateInstanceInAutoScalingGroup returns the Activity it started
//     (Response Elements: "Activity: A scaling activity"); "This call simply
//     makes a termination request. The instance is not terminated
//     immediately", so the reply's activity is InProgress.

// defaultCooldown is the DefaultCooldown every emulated group reports.
const defaultCooldown = 300 * time.Second

func init() {
	autoScalingActions["SetDesiredCapacity"] = (*Server).setDesiredCapacity
}

func (s *Server) setDesiredCapacity(form url.Values, _ *result) error {
	g, err := s.group(form)
	if err != nil {
		return err
	}
	if form.Get("DesiredCapacity") == "" {
		return validation("DesiredCapacity is required")
	}
	n, err := intParam(form, "DesiredCapacity", 0)
	if err != nil {
		return err
	}
	switch {
	case int32(n) > g.MaxSize:
		return validation("New SetDesiredCapacity value %d is above max value %d for the AutoScalingGroup.", n, g.MaxSize)
	case int32(n) < g.MinSize:
		return validation("New SetDesiredCapacity value %d is below min value %d for the AutoScalingGroup.", n, g.MinSize)
	}
	if honor, _ := strconv.ParseBool(form.Get("HonorCooldown")); honor {
		if last, ok := s.lastActivity(g.Name); ok && s.clock.Since(last) < defaultCooldown {
			return &apiError{status: 400, code: "ScalingActivityInProgress", senderFault: true,
				msg: "Scaling activity is in progress and blocks this action: the group's cooldown has not expired"}
		}
	}
	g.desired = int32(n)
	s.converge(g)
	return nil
}

// lastActivity returns when the group's latest scaling activity started.
func (s *Server) lastActivity(group string) (time.Time, bool) {
	for i := len(s.activities) - 1; i >= 0; i-- {
		if s.activities[i].Group == group {
			return s.activities[i].Start, true
		}
	}
	return time.Time{}, false
}

// terminationActivity is the reply's Activity for a termination request of
// instance id: the newest activity terminating it, as it stood when the
// request was made.
func (s *Server) terminationActivity(id string) *xmlActivity {
	for i := len(s.activities) - 1; i >= 0; i-- {
		a := s.activities[i]
		if strings.HasPrefix(a.Description, "Terminating EC2 instance: "+id) {
			return &xmlActivity{ActivityID: a.ID, AutoScalingGroupName: a.Group, Description: a.Description, Cause: a.Cause,
				StartTime: a.Start.UTC().Format(time.RFC3339), StatusCode: "InProgress", Progress: 0}
		}
	}
	return nil
}
