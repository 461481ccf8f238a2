package asg_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestDescribeInstanceTypesDescribesTheKnown: EC2 fails a whole
// DescribeInstanceTypes call on one unknown type (awstest pins it); the
// client then describes the types one by one and returns every known one,
// with an UnknownInstanceTypesError naming the rest.
func TestDescribeInstanceTypesDescribesTheKnown(t *testing.T) {
	ctx := context.Background()
	emu := awstest.NewServer(clocktesting.NewFakeClock(time.Now()))
	t.Cleanup(emu.Close)
	c, err := asg.New(ctx, emu.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.DescribeInstanceTypes(ctx, []string{"m5.large", "m9.mythical", "r5.xlarge", "x9.huge"})
	var unknown *asg.UnknownInstanceTypesError
	if !errors.As(err, &unknown) || !cmp.Equal(unknown.Names, []string{"m9.mythical", "x9.huge"}) {
		t.Fatalf("error %v, want an UnknownInstanceTypesError naming m9.mythical and x9.huge", err)
	}
	var names []string
	for _, it := range got {
		names = append(names, it.Name)
	}
	if diff := cmp.Diff([]string{"m5.large", "r5.xlarge"}, names); diff != "" {
		t.Errorf("described types (-want, +got):\n%s", diff)
	}
	// Other failures are not taken for unknown types.
	emu.Inject(awstest.Fault{Service: "ec2", Action: "DescribeInstanceTypes", Code: "UnauthorizedOperation", Status: 403})
	if _, err := c.DescribeInstanceTypes(ctx, []string{"m5.large"}); err == nil || errors.As(err, &unknown) {
		t.Errorf("error %v, want the UnauthorizedOperation", err)
	}
}
