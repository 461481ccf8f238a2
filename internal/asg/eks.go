package asg

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
)

// eksAPI is the part of *eks.Client the balancer uses: the labels, taints
// and tags of an EKS managed node group, which cluster-autoscaler puts in
// its template of the group (EKS API Reference, DescribeNodegroup).
type eksAPI interface {
	DescribeNodegroup(context.Context, *eks.DescribeNodegroupInput, ...func(*eks.Options)) (*eks.DescribeNodegroupOutput, error)
}

var _ eksAPI = (*eks.Client)(nil)

// ErrEKSDisabled is what DescribeNodegroup returns when the client was built
// without EKS (Options.DisableEKS).
var ErrEKSDisabled = errors.New("EKS DescribeNodegroup is turned off (--eks-describe-nodegroups=false)")

// ErrNodegroupNotFound is wrapped in DescribeNodegroup's error when EKS
// answers ResourceNotFoundException: the cluster has no such node group.
var ErrNodegroupNotFound = errors.New("EKS has no such node group")

// Nodegroup is what DescribeNodegroup says of a managed node group, as the
// API returns it: the balancer validates and translates it.
type Nodegroup struct {
	Name, Cluster string
	// CapacityType is ON_DEMAND, SPOT or CAPACITY_BLOCK; empty if not returned.
	CapacityType string
	AMIType      string
	Version      string
	DiskSize     *int32
	Labels       map[string]string
	Taints       []NodegroupTaint
	Tags         map[string]string
}

// NodegroupTaint is an EKS taint: Effect is NO_SCHEDULE, NO_EXECUTE or
// PREFER_NO_SCHEDULE. HasKey and HasValue say whether the API returned them.
type NodegroupTaint struct {
	Key, Value, Effect string
	HasKey, HasValue   bool
}

// DescribeNodegroup describes one managed node group of a cluster.
func (c *Client) DescribeNodegroup(ctx context.Context, cluster, nodegroup string) (*Nodegroup, error) {
	if c.eks == nil {
		return nil, ErrEKSDisabled
	}
	out, err := c.eks.DescribeNodegroup(ctx, &eks.DescribeNodegroupInput{ClusterName: aws.String(cluster), NodegroupName: aws.String(nodegroup)})
	if nf := (*ekstypes.ResourceNotFoundException)(nil); errors.As(err, &nf) {
		return nil, fmt.Errorf("describing EKS node group %s of cluster %s: %w: %w", nodegroup, cluster, ErrNodegroupNotFound, err)
	}
	if err != nil {
		return nil, fmt.Errorf("describing EKS node group %s of cluster %s: %w", nodegroup, cluster, err)
	}
	if out.Nodegroup == nil {
		return nil, fmt.Errorf("describing EKS node group %s of cluster %s: the reply has no nodegroup", nodegroup, cluster)
	}
	ng := out.Nodegroup
	res := &Nodegroup{
		Name: aws.ToString(ng.NodegroupName), Cluster: aws.ToString(ng.ClusterName),
		CapacityType: string(ng.CapacityType), AMIType: string(ng.AmiType), Version: aws.ToString(ng.Version),
		DiskSize: ng.DiskSize, Labels: ng.Labels, Tags: ng.Tags,
	}
	for _, t := range ng.Taints {
		res.Taints = append(res.Taints, NodegroupTaint{
			Key: aws.ToString(t.Key), Value: aws.ToString(t.Value), Effect: string(t.Effect),
			HasKey: t.Key != nil, HasValue: t.Value != nil,
		})
	}
	return res, nil
}

type metricsEKS struct {
	eksAPI
	m *metrics
}

func (e *metricsEKS) DescribeNodegroup(ctx context.Context, in *eks.DescribeNodegroupInput, o ...func(*eks.Options)) (*eks.DescribeNodegroupOutput, error) {
	out, err := e.eksAPI.DescribeNodegroup(ctx, in, o...)
	e.m.observe("eks", "DescribeNodegroup", err)
	return out, err
}

// newEKS builds the EKS client of cfg; endpoint, if set, overrides the
// service endpoint.
func newEKS(cfg aws.Config, endpoint string, m *metrics) eksAPI {
	return &metricsEKS{eksAPI: eks.NewFromConfig(cfg, func(o *eks.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}), m: m}
}
