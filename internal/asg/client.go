package asg

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
)

// autoScalingAPI is the part of *autoscaling.Client the balancer uses.
type autoScalingAPI interface {
	autoscaling.DescribeAutoScalingGroupsAPIClient
	autoscaling.DescribeAutoScalingInstancesAPIClient
	SuspendProcesses(context.Context, *autoscaling.SuspendProcessesInput, ...func(*autoscaling.Options)) (*autoscaling.SuspendProcessesOutput, error)
	SetInstanceProtection(context.Context, *autoscaling.SetInstanceProtectionInput, ...func(*autoscaling.Options)) (*autoscaling.SetInstanceProtectionOutput, error)
	PutLifecycleHook(context.Context, *autoscaling.PutLifecycleHookInput, ...func(*autoscaling.Options)) (*autoscaling.PutLifecycleHookOutput, error)
	DescribeLifecycleHooks(context.Context, *autoscaling.DescribeLifecycleHooksInput, ...func(*autoscaling.Options)) (*autoscaling.DescribeLifecycleHooksOutput, error)
	RecordLifecycleActionHeartbeat(context.Context, *autoscaling.RecordLifecycleActionHeartbeatInput, ...func(*autoscaling.Options)) (*autoscaling.RecordLifecycleActionHeartbeatOutput, error)
	CompleteLifecycleAction(context.Context, *autoscaling.CompleteLifecycleActionInput, ...func(*autoscaling.Options)) (*autoscaling.CompleteLifecycleActionOutput, error)
	splitAutoScalingAPI // split.go
}

// ec2API is the part of *ec2.Client the balancer uses.
type ec2API interface {
	ec2.DescribeInstancesAPIClient
	ec2.DescribeInstanceTypesAPIClient
	DescribeLaunchTemplateVersions(context.Context, *ec2.DescribeLaunchTemplateVersionsInput, ...func(*ec2.Options)) (*ec2.DescribeLaunchTemplateVersionsOutput, error)
	splitEC2API // split.go
}

var (
	_ autoScalingAPI = (*autoscaling.Client)(nil)
	_ ec2API         = (*ec2.Client)(nil)
)

// Options configure the clients.
type Options struct {
	// Region of the groups. Empty means the SDK's default chain (AWS_REGION, profile, IMDS).
	Region string
	// Endpoint overrides the service endpoints (BaseEndpoint), e.g. an emulator.
	// Auto Scaling, EC2 and, unless EKSEndpoint is set, EKS are then served
	// from the same URL.
	Endpoint string
	// EKSEndpoint overrides the EKS endpoint alone.
	EKSEndpoint string
	// DisableEKS builds no EKS client: DescribeNodegroup returns ErrEKSDisabled.
	DisableEKS bool
	// AccessKeyID and SecretAccessKey give static credentials, for emulators.
	AccessKeyID, SecretAccessKey string
	// MaxAttempts per call, including the first (default 5). Throttling and
	// 5xx are retried with exponential backoff and jitter up to MaxBackoff.
	MaxAttempts int
	MaxBackoff  time.Duration
	// Backoff replaces the jittered exponential backoff; tests use it to avoid sleeping.
	Backoff retry.BackoffDelayer
	// HTTPClient defaults to the SDK's.
	HTTPClient *http.Client
	// Registerer receives the call metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Client talks to Auto Scaling, EC2 and EKS.
type Client struct {
	asg    autoScalingAPI
	ec2    ec2API
	eks    eksAPI // nil when Options.DisableEKS (eks.go)
	region string
}

// New loads the SDK's default configuration (environment, shared config, IRSA,
// IMDS) unless static credentials are given, and builds a Client.
func New(ctx context.Context, o Options) (*Client, error) {
	var cfg aws.Config
	if o.AccessKeyID != "" {
		cfg = aws.Config{
			Region:      o.Region,
			Credentials: credentials.NewStaticCredentialsProvider(o.AccessKeyID, o.SecretAccessKey, ""),
		}
	} else {
		var loads []func(*config.LoadOptions) error
		if o.Region != "" {
			loads = append(loads, config.WithRegion(o.Region))
		}
		var err error
		if cfg, err = config.LoadDefaultConfig(ctx, loads...); err != nil {
			return nil, fmt.Errorf("loading AWS configuration: %w", err)
		}
	}
	if cfg.Region == "" {
		return nil, errors.New("no AWS region: set --region or AWS_REGION")
	}
	if o.Endpoint != "" {
		cfg.BaseEndpoint = aws.String(o.Endpoint)
	}
	if o.HTTPClient != nil {
		cfg.HTTPClient = o.HTTPClient
	}
	cfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 5
			if o.MaxAttempts > 0 {
				so.MaxAttempts = o.MaxAttempts
			}
			if o.MaxBackoff > 0 {
				so.MaxBackoff = o.MaxBackoff
				so.Backoff = retry.NewExponentialJitterBackoff(o.MaxBackoff)
			}
			if o.Backoff != nil {
				so.Backoff = o.Backoff
			}
		})
	}
	m := newMetrics(o.Registerer)
	c := newClient(
		&metricsAutoScaling{autoScalingAPI: autoscaling.NewFromConfig(cfg), m: m},
		&metricsEC2{ec2API: ec2.NewFromConfig(cfg), m: m},
	)
	c.region = cfg.Region
	if !o.DisableEKS {
		endpoint := o.EKSEndpoint
		if endpoint == "" {
			endpoint = o.Endpoint
		}
		c.eks = newEKS(cfg, endpoint, m)
	}
	return c, nil
}

// Region is the region both clients ask.
func (c *Client) Region() string { return c.region }

func newClient(asg autoScalingAPI, e ec2API) *Client { return &Client{asg: asg, ec2: e} }

// DescribeGroups returns the groups of the selector with their instances,
// following the pages.
func (c *Client) DescribeGroups(ctx context.Context, sel Selector) ([]Group, error) {
	var inputs []*autoscaling.DescribeAutoScalingGroupsInput
	if len(sel.Names) > 0 {
		for chunk := range slices.Chunk(sel.Names, maxGroupNamesPerCall) {
			inputs = append(inputs, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: chunk, MaxRecords: aws.Int32(maxGroupsPerPage)})
		}
	} else {
		in := &autoscaling.DescribeAutoScalingGroupsInput{MaxRecords: aws.Int32(maxGroupsPerPage)}
		// One filter per key: filters are ANDed, values within a filter ORed.
		for _, k := range sel.TagKeys {
			in.Filters = append(in.Filters, astypes.Filter{Name: aws.String("tag-key"), Values: []string{k}})
		}
		inputs = append(inputs, in)
	}
	var out []Group
	for _, in := range inputs {
		p := autoscaling.NewDescribeAutoScalingGroupsPaginator(c.asg, in)
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("describing auto scaling groups: %w", err)
			}
			for i := range page.AutoScalingGroups {
				out = append(out, groupFrom(&page.AutoScalingGroups[i]))
			}
		}
	}
	return out, nil
}

// maxInstanceIDsPerCall is the API's limit on InstanceIds of
// DescribeAutoScalingInstances ("Array Members: Maximum number of 50 items").
const maxInstanceIDsPerCall = 50

// GroupMember is an instance in an Auto Scaling group, as
// DescribeAutoScalingInstances reports it.
type GroupMember struct {
	ID, Group, Zone, LifecycleState string
}

// DescribeAutoScalingInstances returns the instances among ids that are in an
// Auto Scaling group, whichever group; the others are left out (the API
// ignores an ID it does not know).
func (c *Client) DescribeAutoScalingInstances(ctx context.Context, ids []string) ([]GroupMember, error) {
	var out []GroupMember
	for chunk := range slices.Chunk(ids, maxInstanceIDsPerCall) {
		p := autoscaling.NewDescribeAutoScalingInstancesPaginator(c.asg, &autoscaling.DescribeAutoScalingInstancesInput{
			InstanceIds: chunk, MaxRecords: aws.Int32(maxInstanceIDsPerCall)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("describing auto scaling instances: %w", err)
			}
			for _, i := range page.AutoScalingInstances {
				out = append(out, GroupMember{ID: aws.ToString(i.InstanceId), Group: aws.ToString(i.AutoScalingGroupName),
					Zone: aws.ToString(i.AvailabilityZone), LifecycleState: aws.ToString(i.LifecycleState)})
			}
		}
	}
	return out, nil
}

func groupFrom(g *astypes.AutoScalingGroup) Group {
	out := Group{
		Name:            aws.ToString(g.AutoScalingGroupName),
		Zones:           g.AvailabilityZones,
		MinSize:         aws.ToInt32(g.MinSize),
		MaxSize:         aws.ToInt32(g.MaxSize),
		DesiredCapacity: aws.ToInt32(g.DesiredCapacity),
		Tags:            make(map[string]string, len(g.Tags)),
	}
	for _, t := range g.Tags {
		out.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	for _, p := range g.SuspendedProcesses {
		out.SuspendedProcesses = append(out.SuspendedProcesses, aws.ToString(p.ProcessName))
	}
	for _, i := range g.Instances {
		out.Instances = append(out.Instances, GroupInstance{
			ID:                   aws.ToString(i.InstanceId),
			Zone:                 aws.ToString(i.AvailabilityZone),
			InstanceType:         aws.ToString(i.InstanceType),
			LifecycleState:       string(i.LifecycleState),
			ProtectedFromScaleIn: aws.ToBool(i.ProtectedFromScaleIn),
		})
	}
	if lt := g.LaunchTemplate; lt != nil {
		out.LaunchTemplate = LaunchTemplateRef{ID: aws.ToString(lt.LaunchTemplateId), Name: aws.ToString(lt.LaunchTemplateName), Version: aws.ToString(lt.Version)}
	}
	if mip := g.MixedInstancesPolicy; mip != nil && mip.LaunchTemplate != nil {
		for _, o := range mip.LaunchTemplate.Overrides {
			if t := aws.ToString(o.InstanceType); t != "" {
				out.OverrideTypes = append(out.OverrideTypes, t)
			}
		}
		if spec := mip.LaunchTemplate.LaunchTemplateSpecification; spec != nil && out.LaunchTemplate == (LaunchTemplateRef{}) {
			out.LaunchTemplate = LaunchTemplateRef{ID: aws.ToString(spec.LaunchTemplateId), Name: aws.ToString(spec.LaunchTemplateName), Version: aws.ToString(spec.Version)}
		}
	}
	return out
}

// SuspendProcesses suspends the processes of a group. Suspending twice is harmless.
func (c *Client) SuspendProcesses(ctx context.Context, group string, processes ...string) error {
	_, err := c.asg.SuspendProcesses(ctx, &autoscaling.SuspendProcessesInput{AutoScalingGroupName: aws.String(group), ScalingProcesses: processes})
	return err
}

// SetInstanceProtection sets scale-in protection, 50 instances per call.
func (c *Client) SetInstanceProtection(ctx context.Context, group string, ids []string, protected bool) error {
	var errs []error
	for chunk := range slices.Chunk(ids, maxProtectionBatch) {
		_, err := c.asg.SetInstanceProtection(ctx, &autoscaling.SetInstanceProtectionInput{
			AutoScalingGroupName: aws.String(group), InstanceIds: chunk, ProtectedFromScaleIn: aws.Bool(protected),
		})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// PutLifecycleHook creates or updates a hook.
func (c *Client) PutLifecycleHook(ctx context.Context, h Hook) error {
	_, err := c.asg.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{
		AutoScalingGroupName:  aws.String(h.Group),
		LifecycleHookName:     aws.String(h.Name),
		LifecycleTransition:   aws.String(h.Transition),
		HeartbeatTimeout:      aws.Int32(h.HeartbeatTimeout),
		DefaultResult:         aws.String(h.DefaultResult),
		NotificationTargetARN: optional(h.NotificationTargetARN), RoleARN: optional(h.RoleARN),
		NotificationMetadata: optional(h.NotificationMetadata),
	})
	return err
}

// optional is nil for "", so that a request leaves out what a hook does not have.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

// DescribeLifecycleHooks lists the hooks of a group.
func (c *Client) DescribeLifecycleHooks(ctx context.Context, group string) ([]Hook, error) {
	out, err := c.asg.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String(group)})
	if err != nil {
		return nil, err
	}
	hooks := make([]Hook, 0, len(out.LifecycleHooks))
	for _, h := range out.LifecycleHooks {
		hooks = append(hooks, Hook{
			Group:                 aws.ToString(h.AutoScalingGroupName),
			Name:                  aws.ToString(h.LifecycleHookName),
			Transition:            aws.ToString(h.LifecycleTransition),
			HeartbeatTimeout:      aws.ToInt32(h.HeartbeatTimeout),
			GlobalTimeout:         aws.ToInt32(h.GlobalTimeout),
			DefaultResult:         aws.ToString(h.DefaultResult),
			NotificationTargetARN: aws.ToString(h.NotificationTargetARN), RoleARN: aws.ToString(h.RoleARN),
			NotificationMetadata: aws.ToString(h.NotificationMetadata),
		})
	}
	return hooks, nil
}

// RecordLifecycleActionHeartbeat extends the wait of a held instance by the hook's heartbeat timeout.
func (c *Client) RecordLifecycleActionHeartbeat(ctx context.Context, group, hook, instance string) error {
	_, err := c.asg.RecordLifecycleActionHeartbeat(ctx, &autoscaling.RecordLifecycleActionHeartbeatInput{
		AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String(hook), InstanceId: aws.String(instance),
	})
	return err
}

// CompleteLifecycleAction ends the wait of a held instance.
func (c *Client) CompleteLifecycleAction(ctx context.Context, group, hook, instance, result string) error {
	_, err := c.asg.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String(hook), InstanceId: aws.String(instance),
		LifecycleActionResult: aws.String(result),
	})
	return err
}

// DescribeInstances returns the instances among ids that EC2 still knows.
// It filters by instance-id instead of passing InstanceIds, which fails the
// whole call with InvalidInstanceID.NotFound when one instance is long gone.
func (c *Client) DescribeInstances(ctx context.Context, ids []string) ([]Instance, error) {
	var out []Instance
	for chunk := range slices.Chunk(ids, maxFilterValues) {
		p := ec2.NewDescribeInstancesPaginator(c.ec2, &ec2.DescribeInstancesInput{
			Filters:    []ec2types.Filter{{Name: aws.String("instance-id"), Values: chunk}},
			MaxResults: aws.Int32(maxInstancesPerPage),
		})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("describing instances: %w", err)
			}
			for _, r := range page.Reservations {
				for _, i := range r.Instances {
					inst := Instance{ID: aws.ToString(i.InstanceId), InstanceType: string(i.InstanceType), ImageID: aws.ToString(i.ImageId)}
					if i.Placement != nil {
						inst.Zone = aws.ToString(i.Placement.AvailabilityZone)
					}
					if i.State != nil {
						inst.State = string(i.State.Name)
					}
					out = append(out, inst)
				}
			}
		}
	}
	return out, nil
}

// maxFilterValues is the number of values EC2 accepts in one filter.
const maxFilterValues = 200

// UnknownInstanceTypesError names the instance types EC2 does not know.
type UnknownInstanceTypesError struct{ Names []string }

func (e *UnknownInstanceTypesError) Error() string {
	return fmt.Sprintf("EC2 does not know instance types %v (InvalidInstanceType)", e.Names)
}

// DescribeInstanceTypes returns the instance types, 100 per call. EC2 fails
// a whole call on one type it does not know (InvalidInstanceType), so such a
// call is made again type by type: every known type is returned, with an
// *UnknownInstanceTypesError naming the others.
func (c *Client) DescribeInstanceTypes(ctx context.Context, names []string) ([]InstanceType, error) {
	var out []InstanceType
	var unknown []string
	for chunk := range slices.Chunk(names, maxTypesPerCall) {
		got, err := c.describeInstanceTypes(ctx, chunk)
		if err == nil {
			out = append(out, got...)
			continue
		}
		var api smithy.APIError
		if !errors.As(err, &api) || api.ErrorCode() != "InvalidInstanceType" {
			return nil, err
		}
		for _, n := range chunk {
			got, err := c.describeInstanceTypes(ctx, []string{n})
			switch {
			case err == nil:
				out = append(out, got...)
			case errors.As(err, &api) && api.ErrorCode() == "InvalidInstanceType":
				unknown = append(unknown, n)
			default:
				return out, err
			}
		}
	}
	if len(unknown) > 0 {
		return out, &UnknownInstanceTypesError{Names: unknown}
	}
	return out, nil
}

func (c *Client) describeInstanceTypes(ctx context.Context, names []string) ([]InstanceType, error) {
	var out []InstanceType
	in := &ec2.DescribeInstanceTypesInput{}
	for _, n := range names {
		in.InstanceTypes = append(in.InstanceTypes, ec2types.InstanceType(n))
	}
	p := ec2.NewDescribeInstanceTypesPaginator(c.ec2, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describing instance types: %w", err)
		}
		for _, t := range page.InstanceTypes {
			it := InstanceType{Name: string(t.InstanceType)}
			if t.VCpuInfo != nil {
				it.VCPU = aws.ToInt32(t.VCpuInfo.DefaultVCpus)
			}
			if t.MemoryInfo != nil {
				it.MemoryMiB = aws.ToInt64(t.MemoryInfo.SizeInMiB)
			}
			if t.ProcessorInfo != nil {
				for _, a := range t.ProcessorInfo.SupportedArchitectures {
					it.Architectures = append(it.Architectures, string(a))
				}
			}
			if t.GpuInfo != nil {
				for _, g := range t.GpuInfo.Gpus {
					if aws.ToString(g.Manufacturer) == "NVIDIA" {
						it.NvidiaGPUs += aws.ToInt32(g.Count)
					}
				}
			}
			out = append(out, it)
		}
	}
	return out, nil
}

// LaunchTemplateInstanceType returns the instance type a launch template
// version launches, "" if it does not say.
func (c *Client) LaunchTemplateInstanceType(ctx context.Context, lt LaunchTemplateRef) (string, error) {
	in := &ec2.DescribeLaunchTemplateVersionsInput{Versions: []string{lt.Version}}
	if lt.Version == "" {
		in.Versions = []string{"$Default"}
	}
	if lt.ID != "" {
		in.LaunchTemplateId = aws.String(lt.ID)
	} else {
		in.LaunchTemplateName = aws.String(lt.Name)
	}
	out, err := c.ec2.DescribeLaunchTemplateVersions(ctx, in)
	if err != nil {
		return "", err
	}
	for _, v := range out.LaunchTemplateVersions {
		if v.LaunchTemplateData != nil {
			return string(v.LaunchTemplateData.InstanceType), nil
		}
	}
	return "", nil
}
