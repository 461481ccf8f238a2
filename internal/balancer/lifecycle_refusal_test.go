package balancer

import (
	"errors"
	"fmt"
	"testing"

	"github.com/aws/smithy-go"
)

// TestOnlyNoActiveLifecycleActionCountsAsCompleted: of CompleteLifecycleAction's
// refusals only "No active Lifecycle Action found with instance ID <id>" (a
// ValidationError, API_CompleteLifecycleAction) means the balancer's hook holds
// nothing of the instance; any other error still fails the loop.
func TestOnlyNoActiveLifecycleActionCountsAsCompleted(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("wrapped: %w", &smithy.GenericAPIError{Code: "ValidationError", Message: "No active Lifecycle Action found with instance ID i-0123456789abcdef0"}), true},
		{&smithy.GenericAPIError{Code: "ValidationError", Message: "LifecycleActionResult must be CONTINUE or ABANDON"}, false},
		{&smithy.GenericAPIError{Code: "Throttling", Message: "No active Lifecycle Action found with instance ID i-0123456789abcdef0"}, false},
		{errors.New("No active Lifecycle Action found with instance ID i-0123456789abcdef0"), false},
		{nil, false},
	} {
		if got := noActiveLifecycleAction(c.err); got != c.want {
			t.Errorf("noActiveLifecycleAction(%v) = %t, want %t", c.err, got, c.want)
		}
	}
}
