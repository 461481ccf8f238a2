package asg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

// The calls that split a multi-zone group into one group per zone.
type splitAutoScalingAPI interface {
	CreateAutoScalingGroup(context.Context, *autoscaling.CreateAutoScalingGroupInput, ...func(*autoscaling.Options)) (*autoscaling.CreateAutoScalingGroupOutput, error)
	UpdateAutoScalingGroup(context.Context, *autoscaling.UpdateAutoScalingGroupInput, ...func(*autoscaling.Options)) (*autoscaling.UpdateAutoScalingGroupOutput, error)
	DetachInstances(context.Context, *autoscaling.DetachInstancesInput, ...func(*autoscaling.Options)) (*autoscaling.DetachInstancesOutput, error)
	AttachInstances(context.Context, *autoscaling.AttachInstancesInput, ...func(*autoscaling.Options)) (*autoscaling.AttachInstancesOutput, error)
	CreateOrUpdateTags(context.Context, *autoscaling.CreateOrUpdateTagsInput, ...func(*autoscaling.Options)) (*autoscaling.CreateOrUpdateTagsOutput, error)
	DeleteTags(context.Context, *autoscaling.DeleteTagsInput, ...func(*autoscaling.Options)) (*autoscaling.DeleteTagsOutput, error)
}

type splitEC2API interface {
	DescribeSubnets(context.Context, *ec2.DescribeSubnetsInput, ...func(*ec2.Options)) (*ec2.DescribeSubnetsOutput, error)
	DescribeImages(context.Context, *ec2.DescribeImagesInput, ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error)
	EnableImageDeregistrationProtection(context.Context, *ec2.EnableImageDeregistrationProtectionInput, ...func(*ec2.Options)) (*ec2.EnableImageDeregistrationProtectionOutput, error)
	DisableImageDeregistrationProtection(context.Context, *ec2.DisableImageDeregistrationProtectionInput, ...func(*ec2.Options)) (*ec2.DisableImageDeregistrationProtectionOutput, error)
}

// MaxMoveBatch is how many instances DetachInstances and AttachInstances take per call.
const MaxMoveBatch = 20

// ZoneGroup is a single-zone copy of a group.
type ZoneGroup struct {
	// Source is the group whose launch template or mixed instances policy,
	// health check, cooldown, termination policies, scale-in protection
	// setting, load balancers, target groups and other traffic sources,
	// instance lifecycle policy (retention triggers), deletion protection,
	// instance maintenance policy, capacity reservation preference and
	// zone distribution and impairment settings are copied.
	Source     string
	Name, Zone string
	// MinSize is also the desired capacity at creation.
	MinSize, MaxSize int32
	// Tags replace the source's; PropagateAtLaunch is copied key by key
	// from the source (false for keys the source does not have).
	Tags map[string]string
	// Hooks are created with the group, so no instance is ever in it unhooked.
	Hooks []Hook
}

// CreateZoneGroup creates zg from its source. When the source lives in
// subnets (VPCZoneIdentifier), the copy gets those of zg.Zone.
func (c *Client) CreateZoneGroup(ctx context.Context, zg ZoneGroup) error {
	out, err := c.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{zg.Source}})
	if err != nil {
		return fmt.Errorf("describing %s: %w", zg.Source, err)
	}
	if len(out.AutoScalingGroups) == 0 {
		return fmt.Errorf("group %s not found", zg.Source)
	}
	src := &out.AutoScalingGroups[0]
	in := &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(zg.Name),
		MinSize:              aws.Int32(zg.MinSize), MaxSize: aws.Int32(zg.MaxSize), DesiredCapacity: aws.Int32(zg.MinSize),
		LaunchTemplate: byID(src.LaunchTemplate), MixedInstancesPolicy: mixedByID(src.MixedInstancesPolicy), LaunchConfigurationName: src.LaunchConfigurationName,
		HealthCheckType: src.HealthCheckType, HealthCheckGracePeriod: src.HealthCheckGracePeriod,
		DefaultCooldown: src.DefaultCooldown, DefaultInstanceWarmup: src.DefaultInstanceWarmup,
		TerminationPolicies: src.TerminationPolicies, NewInstancesProtectedFromScaleIn: src.NewInstancesProtectedFromScaleIn,
		CapacityRebalance: src.CapacityRebalance, MaxInstanceLifetime: src.MaxInstanceLifetime,
		ServiceLinkedRoleARN: src.ServiceLinkedRoleARN, TargetGroupARNs: src.TargetGroupARNs, LoadBalancerNames: src.LoadBalancerNames,
		PlacementGroup: src.PlacementGroup, Context: src.Context, DesiredCapacityType: src.DesiredCapacityType,
		// What keeps the instances and their data on the source keeps them
		// on the copy: its retention triggers (an abandoned termination
		// hook retains the instance rather than terminates it) and its
		// deletion protection (no force delete terminating them all).
		InstanceLifecyclePolicy: src.InstanceLifecyclePolicy, DeletionProtection: src.DeletionProtection,
		InstanceMaintenancePolicy: src.InstanceMaintenancePolicy, CapacityReservationSpecification: src.CapacityReservationSpecification,
		AvailabilityZoneDistribution: src.AvailabilityZoneDistribution, AvailabilityZoneImpairmentPolicy: src.AvailabilityZoneImpairmentPolicy,
		TrafficSources: otherTrafficSources(src),
	}
	if subnets := splitList(aws.ToString(src.VPCZoneIdentifier)); len(subnets) > 0 {
		zoned, err := c.subnetsIn(ctx, subnets, zg.Zone)
		if err != nil {
			return err
		}
		if len(zoned) == 0 {
			return fmt.Errorf("group %s has no subnet in zone %s", zg.Source, zg.Zone)
		}
		in.VPCZoneIdentifier = aws.String(strings.Join(zoned, ","))
	} else {
		in.AvailabilityZones = []string{zg.Zone}
	}
	propagate := map[string]bool{}
	for _, t := range src.Tags {
		propagate[aws.ToString(t.Key)] = aws.ToBool(t.PropagateAtLaunch)
	}
	in.Tags = tags(zg.Name, zg.Tags, propagate)
	for _, h := range zg.Hooks {
		in.LifecycleHookSpecificationList = append(in.LifecycleHookSpecificationList, astypes.LifecycleHookSpecification{
			LifecycleHookName: aws.String(h.Name), LifecycleTransition: aws.String(h.Transition),
			HeartbeatTimeout: aws.Int32(h.HeartbeatTimeout), DefaultResult: aws.String(h.DefaultResult),
			NotificationTargetARN: optional(h.NotificationTargetARN), RoleARN: optional(h.RoleARN),
			NotificationMetadata: optional(h.NotificationMetadata),
		})
	}
	_, err = c.asg.CreateAutoScalingGroup(ctx, in)
	return err
}

// otherTrafficSources are the source's traffic sources that TargetGroupARNs
// and LoadBalancerNames do not name already (VPC Lattice, or a load balancer
// attached with AttachTrafficSources and answered in both lists): each
// traffic source is given to the copy once.
func otherTrafficSources(src *astypes.AutoScalingGroup) []astypes.TrafficSourceIdentifier {
	var out []astypes.TrafficSourceIdentifier
	for _, t := range src.TrafficSources {
		if id := aws.ToString(t.Identifier); !slices.Contains(src.TargetGroupARNs, id) && !slices.Contains(src.LoadBalancerNames, id) {
			out = append(out, t)
		}
	}
	return out
}

// byID names a launch template by its id only: DescribeAutoScalingGroups
// answers with both id and name, and CreateAutoScalingGroup takes one of
// them, not both (LaunchTemplateSpecification: "You must specify either a
// LaunchTemplateId or a LaunchTemplateName").
func byID(lt *astypes.LaunchTemplateSpecification) *astypes.LaunchTemplateSpecification {
	if lt == nil {
		return nil
	}
	out := *lt
	if out.LaunchTemplateId != nil {
		out.LaunchTemplateName = nil
	}
	return &out
}

// mixedByID copies a mixed instances policy with its launch templates, the
// overrides' included, named by id only.
func mixedByID(p *astypes.MixedInstancesPolicy) *astypes.MixedInstancesPolicy {
	if p == nil || p.LaunchTemplate == nil {
		return p
	}
	out := *p
	lt := *p.LaunchTemplate
	lt.LaunchTemplateSpecification = byID(lt.LaunchTemplateSpecification)
	lt.Overrides = slices.Clone(lt.Overrides)
	for i := range lt.Overrides {
		lt.Overrides[i].LaunchTemplateSpecification = byID(lt.Overrides[i].LaunchTemplateSpecification)
	}
	out.LaunchTemplate = &lt
	return &out
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// subnetsIn returns the subnets among ids that are in zone, in the order given.
func (c *Client) subnetsIn(ctx context.Context, ids []string, zone string) ([]string, error) {
	out, err := c.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: ids})
	if err != nil {
		return nil, fmt.Errorf("describing subnets: %w", err)
	}
	in := map[string]bool{}
	for _, s := range out.Subnets {
		if aws.ToString(s.AvailabilityZone) == zone {
			in[aws.ToString(s.SubnetId)] = true
		}
	}
	var zoned []string
	for _, id := range ids {
		if in[id] {
			zoned = append(zoned, id)
		}
	}
	return zoned, nil
}

func tags(group string, kv map[string]string, propagate map[string]bool) []astypes.Tag {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]astypes.Tag, 0, len(keys))
	for _, k := range keys {
		out = append(out, astypes.Tag{
			ResourceId: aws.String(group), ResourceType: aws.String("auto-scaling-group"),
			Key: aws.String(k), Value: aws.String(kv[k]), PropagateAtLaunch: aws.Bool(propagate[k]),
		})
	}
	return out
}

// Sizes are the bounds and desired capacity of a group; nil leaves one as it is.
type Sizes struct{ Min, Max, Desired *int32 }

// UpdateGroupSize changes the sizes of a group.
func (c *Client) UpdateGroupSize(ctx context.Context, group string, s Sizes) error {
	_, err := c.asg.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(group), MinSize: s.Min, MaxSize: s.Max, DesiredCapacity: s.Desired,
	})
	return err
}

// DetachInstances removes InService instances from a group, lowering its
// desired capacity so that Auto Scaling launches no replacement. The
// instances keep running; their scale-in protection is lost.
func (c *Client) DetachInstances(ctx context.Context, group string, ids []string) error {
	for chunk := range slices.Chunk(ids, MaxMoveBatch) {
		if _, err := c.asg.DetachInstances(ctx, &autoscaling.DetachInstancesInput{
			AutoScalingGroupName: aws.String(group), InstanceIds: chunk, ShouldDecrementDesiredCapacity: aws.Bool(true),
		}, attempts(ctx)...); err != nil {
			return err
		}
	}
	return nil
}

// AttachInstances adds running instances that belong to no group, raising
// the desired capacity; it fails when that would pass the maximum size.
// The instances take the group's NewInstancesProtectedFromScaleIn.
func (c *Client) AttachInstances(ctx context.Context, group string, ids []string) error {
	for chunk := range slices.Chunk(ids, MaxMoveBatch) {
		if _, err := c.asg.AttachInstances(ctx, &autoscaling.AttachInstancesInput{AutoScalingGroupName: aws.String(group), InstanceIds: chunk}, attempts(ctx)...); err != nil {
			return err
		}
	}
	return nil
}

// ImagesAvailable returns, of the AMIs ids, those that still exist
// (state available): AttachInstances refuses an instance whose AMI is gone
// (user guide, ec2-auto-scaling-detach-attach-instances: "The AMI used to
// launch the instance must still exist"). It filters by image-id, so an AMI
// EC2 no longer knows is simply missing from the answer, and asks for
// deprecated AMIs too, which still launch.
func (c *Client) ImagesAvailable(ctx context.Context, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	for chunk := range slices.Chunk(ids, maxFilterValues) {
		res, err := c.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{
			Filters:           []ec2types.Filter{{Name: aws.String("image-id"), Values: chunk}},
			IncludeDeprecated: aws.Bool(true),
		})
		if err != nil {
			return nil, fmt.Errorf("describing images: %w", err)
		}
		for _, im := range res.Images {
			if im.State == ec2types.ImageStateAvailable {
				out[aws.ToString(im.ImageId)] = true
			}
		}
	}
	return out, nil
}

// OwnedImages returns, of the AMIs ids, those the account owns (DescribeImages
// with Owners=self), and whether each has deregistration protection already.
func (c *Client) OwnedImages(ctx context.Context, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	for chunk := range slices.Chunk(ids, maxFilterValues) {
		res, err := c.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{
			Filters:           []ec2types.Filter{{Name: aws.String("image-id"), Values: chunk}},
			Owners:            []string{"self"},
			IncludeDeprecated: aws.Bool(true),
		})
		if err != nil {
			return nil, fmt.Errorf("describing images: %w", err)
		}
		for _, im := range res.Images {
			out[aws.ToString(im.ImageId)] = strings.HasPrefix(aws.ToString(im.DeregistrationProtection), "enabled")
		}
	}
	return out, nil
}

// SetImageProtection enables or disables the deregistration protection of
// an AMI (API_EnableImageDeregistrationProtection: "When deregistration
// protection is enabled, the AMI can't be deregistered."), without the
// cooldown that would keep it for 24 hours after it is disabled.
func (c *Client) SetImageProtection(ctx context.Context, id string, on bool) error {
	var err error
	if on {
		_, err = c.ec2.EnableImageDeregistrationProtection(ctx, &ec2.EnableImageDeregistrationProtectionInput{ImageId: aws.String(id), WithCooldown: aws.Bool(false)})
	} else {
		_, err = c.ec2.DisableImageDeregistrationProtection(ctx, &ec2.DisableImageDeregistrationProtectionInput{ImageId: aws.String(id)})
	}
	if err != nil {
		return fmt.Errorf("setting deregistration protection of %s to %t: %w", id, on, err)
	}
	return nil
}

// IsValidationError reports whether err is an Auto Scaling ValidationError:
// AWS refused the request as it stands, and a retry would fail alike.
func IsValidationError(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == "ValidationError"
}

// ClaimGroupTag sets one tag of a group in a single attempt, without the
// SDK's retries, so that the write lands within the caller's deadline or not
// at all as far as the caller knows (the split lock, internal/split/lock.go).
func (c *Client) ClaimGroupTag(ctx context.Context, group, key, value string) error {
	_, err := c.asg.CreateOrUpdateTags(ctx, &autoscaling.CreateOrUpdateTagsInput{Tags: tags(group, map[string]string{key: value}, nil)},
		func(o *autoscaling.Options) { o.Retryer = retry.AddWithMaxAttempts(o.Retryer, 1) })
	return err
}

// SetGroupTags creates or updates tags of a group, not propagated at launch.
func (c *Client) SetGroupTags(ctx context.Context, group string, kv map[string]string) error {
	_, err := c.asg.CreateOrUpdateTags(ctx, &autoscaling.CreateOrUpdateTagsInput{Tags: tags(group, kv, nil)}, attempts(ctx)...)
	return err
}

type singleAttemptKey struct{}

// SingleAttempt returns a context under which SetGroupTags, DetachInstances
// and AttachInstances are sent once, without the SDK's retries: a caller
// that bounds its writes by a deadline (the split's guarded writes) must not
// have one land later through a retry it no longer waits for.
func SingleAttempt(ctx context.Context) context.Context {
	return context.WithValue(ctx, singleAttemptKey{}, true)
}

func attempts(ctx context.Context) []func(*autoscaling.Options) {
	if once, _ := ctx.Value(singleAttemptKey{}).(bool); once {
		return []func(*autoscaling.Options){func(o *autoscaling.Options) { o.Retryer = retry.AddWithMaxAttempts(o.Retryer, 1) }}
	}
	return nil
}

// DeleteGroupTags removes tags of a group; missing keys are ignored.
func (c *Client) DeleteGroupTags(ctx context.Context, group string, keys []string) error {
	// At most 25 tags per call (user guide ec2-auto-scaling-tagging: "The
	// maximum number of tags that you can add or remove using a single call
	// is 25.").
	for chunk := range slices.Chunk(keys, MaxTagsPerCall) {
		in := &autoscaling.DeleteTagsInput{}
		for _, k := range chunk {
			in.Tags = append(in.Tags, astypes.Tag{ResourceId: aws.String(group), ResourceType: aws.String("auto-scaling-group"), Key: aws.String(k)})
		}
		if _, err := c.asg.DeleteTags(ctx, in); err != nil {
			return err
		}
	}
	return nil
}

// MaxTagsPerCall is how many tags one CreateOrUpdateTags or DeleteTags call
// may add or remove (user guide ec2-auto-scaling-tagging).
const MaxTagsPerCall = 25

func (a *metricsAutoScaling) CreateAutoScalingGroup(ctx context.Context, in *autoscaling.CreateAutoScalingGroupInput, o ...func(*autoscaling.Options)) (*autoscaling.CreateAutoScalingGroupOutput, error) {
	out, err := a.autoScalingAPI.CreateAutoScalingGroup(ctx, in, o...)
	a.m.observe("autoscaling", "CreateAutoScalingGroup", err)
	return out, err
}

func (a *metricsAutoScaling) UpdateAutoScalingGroup(ctx context.Context, in *autoscaling.UpdateAutoScalingGroupInput, o ...func(*autoscaling.Options)) (*autoscaling.UpdateAutoScalingGroupOutput, error) {
	out, err := a.autoScalingAPI.UpdateAutoScalingGroup(ctx, in, o...)
	a.m.observe("autoscaling", "UpdateAutoScalingGroup", err)
	return out, err
}

func (a *metricsAutoScaling) DetachInstances(ctx context.Context, in *autoscaling.DetachInstancesInput, o ...func(*autoscaling.Options)) (*autoscaling.DetachInstancesOutput, error) {
	out, err := a.autoScalingAPI.DetachInstances(ctx, in, o...)
	a.m.observe("autoscaling", "DetachInstances", err)
	return out, err
}

func (a *metricsAutoScaling) AttachInstances(ctx context.Context, in *autoscaling.AttachInstancesInput, o ...func(*autoscaling.Options)) (*autoscaling.AttachInstancesOutput, error) {
	out, err := a.autoScalingAPI.AttachInstances(ctx, in, o...)
	a.m.observe("autoscaling", "AttachInstances", err)
	return out, err
}

func (a *metricsAutoScaling) CreateOrUpdateTags(ctx context.Context, in *autoscaling.CreateOrUpdateTagsInput, o ...func(*autoscaling.Options)) (*autoscaling.CreateOrUpdateTagsOutput, error) {
	out, err := a.autoScalingAPI.CreateOrUpdateTags(ctx, in, o...)
	a.m.observe("autoscaling", "CreateOrUpdateTags", err)
	return out, err
}

func (a *metricsAutoScaling) DeleteTags(ctx context.Context, in *autoscaling.DeleteTagsInput, o ...func(*autoscaling.Options)) (*autoscaling.DeleteTagsOutput, error) {
	out, err := a.autoScalingAPI.DeleteTags(ctx, in, o...)
	a.m.observe("autoscaling", "DeleteTags", err)
	return out, err
}

func (e *metricsEC2) DescribeImages(ctx context.Context, in *ec2.DescribeImagesInput, o ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error) {
	out, err := e.ec2API.DescribeImages(ctx, in, o...)
	e.m.observe("ec2", "DescribeImages", err)
	return out, err
}

func (e *metricsEC2) DescribeSubnets(ctx context.Context, in *ec2.DescribeSubnetsInput, o ...func(*ec2.Options)) (*ec2.DescribeSubnetsOutput, error) {
	out, err := e.ec2API.DescribeSubnets(ctx, in, o...)
	e.m.observe("ec2", "DescribeSubnets", err)
	return out, err
}
