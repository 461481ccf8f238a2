package asg_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestDescribeNodegroupMetrics: every DescribeNodegroup call is counted in
// ballast_aws_api_calls_total under service "eks" with its error code, so
// that a missing IAM grant (AccessDeniedException, EKS API Reference common
// errors) shows on /metrics; the code reaches the caller as a smithy.APIError.
func TestDescribeNodegroupMetrics(t *testing.T) {
	emu := awstest.NewServer(nil)
	defer emu.Close()
	emu.AddNodegroup(awstest.Nodegroup{Cluster: "prod", Name: "ml", CapacityType: "ON_DEMAND"})
	reg := prometheus.NewRegistry()
	o := emu.ClientOptions()
	o.Registerer = reg
	c, err := asg.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DescribeNodegroup(context.Background(), "prod", "ml"); err != nil {
		t.Fatal(err)
	}
	emu.Inject(awstest.EKSFault("ml", "AccessDeniedException", http.StatusForbidden, 1))
	_, err = c.DescribeNodegroup(context.Background(), "prod", "ml")
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "AccessDeniedException" {
		t.Fatalf("denied call: %v, want an AccessDeniedException APIError", err)
	}
	const want = `
# HELP ballast_aws_api_calls_total AWS API calls by service, operation and error code (OK when it succeeded).
# TYPE ballast_aws_api_calls_total counter
ballast_aws_api_calls_total{code="AccessDeniedException",operation="DescribeNodegroup",service="eks"} 1
ballast_aws_api_calls_total{code="OK",operation="DescribeNodegroup",service="eks"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ballast_aws_api_calls_total"); err != nil {
		t.Error(err)
	}
}
