package awstest

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"

	"github.com/ballast-k8s/ballast/internal/asg"
)

func eksClient(t *testing.T, s *Server) *asg.Client {
	t.Helper()
	c, err := asg.New(context.Background(), s.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func strPtr(s string) *string { return &s }

// TestDescribeNodegroup: the real SDK client reads the emulator's reply.
// EKS API Reference, DescribeNodegroup: "GET /clusters/name/node-groups/nodegroupName"
// returns {"nodegroup": {...}} with capacityType, amiType, version, diskSize,
// labels, taints ({key, value, effect}, effect "NO_SCHEDULE | NO_EXECUTE |
// PREFER_NO_SCHEDULE", API_Taint) and tags.
func TestDescribeNodegroup(t *testing.T) {
	s := NewServer(nil)
	defer s.Close()
	s.AddNodegroup(Nodegroup{Cluster: "prod", Name: "gpu", CapacityType: "SPOT", AMIType: "AL2023_x86_64_NVIDIA", Version: "1.37", DiskSize: 50,
		Labels: map[string]string{"team": "ml"},
		Taints: []NodegroupTaint{{Key: "nvidia.com/gpu", Value: strPtr("true"), Effect: "NO_SCHEDULE"}, {Key: "novalue", Effect: "NO_EXECUTE"}},
		Tags:   map[string]string{"k8s.io/cluster-autoscaler/node-template/resources/example.com/dongle": "2"}, ASG: "eks-gpu-1"})
	got, err := eksClient(t, s).DescribeNodegroup(context.Background(), "prod", "gpu")
	if err != nil {
		t.Fatal(err)
	}
	disk := int32(50)
	want := &asg.Nodegroup{Name: "gpu", Cluster: "prod", CapacityType: "SPOT", AMIType: "AL2023_x86_64_NVIDIA", Version: "1.37", DiskSize: &disk,
		Labels: map[string]string{"team": "ml"},
		Taints: []asg.NodegroupTaint{{Key: "nvidia.com/gpu", Value: "true", Effect: "NO_SCHEDULE", HasKey: true, HasValue: true}, {Key: "novalue", Effect: "NO_EXECUTE", HasKey: true}},
		Tags:   map[string]string{"k8s.io/cluster-autoscaler/node-template/resources/example.com/dongle": "2"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DescribeNodegroup (-want, +got):\n%s", diff)
	}
	if c := s.Calls(); len(c) != 1 || c[0].Service != EKSService || c[0].Action != ActionDescribeNodegroup || c[0].Params.Get("nodegroupName") != "gpu" {
		t.Errorf("call log: %+v", c)
	}
}

// TestDescribeNodegroupErrors: the documented errors reach the client with
// their codes. EKS API Reference, DescribeNodegroup, Errors:
// ResourceNotFoundException (HTTP 404) "The specified resource could not be
// found"; ServerException (500); ServiceUnavailableException (503); and the
// common errors AccessDeniedException (403) and ThrottlingException (400),
// which the SDK retries (throttling) or not (access denied).
func TestDescribeNodegroupErrors(t *testing.T) {
	s := NewServer(nil)
	defer s.Close()
	s.AddNodegroup(Nodegroup{Cluster: "prod", Name: "web"})
	c := eksClient(t, s)
	code := func(err error) string {
		var api smithy.APIError
		if errors.As(err, &api) {
			return api.ErrorCode()
		}
		return ""
	}
	if _, err := c.DescribeNodegroup(context.Background(), "prod", "gone"); code(err) != "ResourceNotFoundException" {
		t.Errorf("unknown node group: %v, want ResourceNotFoundException", err)
	}
	if _, err := c.DescribeNodegroup(context.Background(), "other", "web"); code(err) != "ResourceNotFoundException" {
		t.Errorf("node group of another cluster: %v, want ResourceNotFoundException", err)
	}

	s.Inject(EKSFault("web", "AccessDeniedException", http.StatusForbidden, 1))
	if _, err := c.DescribeNodegroup(context.Background(), "prod", "web"); code(err) != "AccessDeniedException" {
		t.Errorf("denied: %v, want AccessDeniedException", err)
	}
	// Throttled twice, then answered: the SDK's retries hide it (4 attempts in ClientOptions).
	s.Inject(EKSFault("web", "ThrottlingException", http.StatusBadRequest, 2))
	if _, err := c.DescribeNodegroup(context.Background(), "prod", "web"); err != nil {
		t.Errorf("throttled twice: %v, want the SDK's retries to succeed", err)
	}
	s.Inject(EKSFault("", "ThrottlingException", http.StatusBadRequest, 10))
	if _, err := c.DescribeNodegroup(context.Background(), "prod", "web"); code(err) != "ThrottlingException" {
		t.Errorf("throttled throughout: %v, want ThrottlingException", err)
	}
	s.Reset()
	s.Inject(EKSFault("web", "ServiceUnavailableException", http.StatusServiceUnavailable, 10))
	if _, err := c.DescribeNodegroup(context.Background(), "prod", "web"); code(err) != "ServiceUnavailableException" {
		t.Errorf("unavailable: %v, want ServiceUnavailableException", err)
	}
	s.Reset()
	s.DeleteNodegroup("prod", "web")
	if _, err := c.DescribeNodegroup(context.Background(), "prod", "web"); code(err) != "ResourceNotFoundException" {
		t.Errorf("deleted node group: %v, want ResourceNotFoundException", err)
	}

	off, err := asg.New(context.Background(), func() asg.Options { o := s.ClientOptions(); o.DisableEKS = true; return o }())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := off.DescribeNodegroup(context.Background(), "prod", "web"); !errors.Is(err, asg.ErrEKSDisabled) {
		t.Errorf("EKS disabled: %v, want ErrEKSDisabled", err)
	}
}
