package asg

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts calls by service, operation and result code. The SDK retries
// inside a call, so one count is one call as the balancer made it.
type metrics struct{ calls *prometheus.CounterVec }

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{calls: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "ballast", Subsystem: "aws", Name: "api_calls_total",
		Help: "AWS API calls by service, operation and error code (OK when it succeeded).",
	}, []string{"service", "operation", "code"})}
	if reg != nil {
		reg.MustRegister(m.calls)
	}
	return m
}

func (m *metrics) observe(service, op string, err error) {
	m.calls.WithLabelValues(service, op, ErrorCode(err)).Inc()
}

// ErrorCode is the AWS error code of err, "OK" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return "OK"
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "Canceled"
	}
	return "Unknown"
}

type metricsAutoScaling struct {
	autoScalingAPI
	m *metrics
}

func (a *metricsAutoScaling) DescribeAutoScalingGroups(ctx context.Context, in *autoscaling.DescribeAutoScalingGroupsInput, o ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error) {
	out, err := a.autoScalingAPI.DescribeAutoScalingGroups(ctx, in, o...)
	a.m.observe("autoscaling", "DescribeAutoScalingGroups", err)
	return out, err
}

func (a *metricsAutoScaling) SuspendProcesses(ctx context.Context, in *autoscaling.SuspendProcessesInput, o ...func(*autoscaling.Options)) (*autoscaling.SuspendProcessesOutput, error) {
	out, err := a.autoScalingAPI.SuspendProcesses(ctx, in, o...)
	a.m.observe("autoscaling", "SuspendProcesses", err)
	return out, err
}

func (a *metricsAutoScaling) SetInstanceProtection(ctx context.Context, in *autoscaling.SetInstanceProtectionInput, o ...func(*autoscaling.Options)) (*autoscaling.SetInstanceProtectionOutput, error) {
	out, err := a.autoScalingAPI.SetInstanceProtection(ctx, in, o...)
	a.m.observe("autoscaling", "SetInstanceProtection", err)
	return out, err
}

func (a *metricsAutoScaling) PutLifecycleHook(ctx context.Context, in *autoscaling.PutLifecycleHookInput, o ...func(*autoscaling.Options)) (*autoscaling.PutLifecycleHookOutput, error) {
	out, err := a.autoScalingAPI.PutLifecycleHook(ctx, in, o...)
	a.m.observe("autoscaling", "PutLifecycleHook", err)
	return out, err
}

func (a *metricsAutoScaling) DescribeLifecycleHooks(ctx context.Context, in *autoscaling.DescribeLifecycleHooksInput, o ...func(*autoscaling.Options)) (*autoscaling.DescribeLifecycleHooksOutput, error) {
	out, err := a.autoScalingAPI.DescribeLifecycleHooks(ctx, in, o...)
	a.m.observe("autoscaling", "DescribeLifecycleHooks", err)
	return out, err
}

func (a *metricsAutoScaling) RecordLifecycleActionHeartbeat(ctx context.Context, in *autoscaling.RecordLifecycleActionHeartbeatInput, o ...func(*autoscaling.Options)) (*autoscaling.RecordLifecycleActionHeartbeatOutput, error) {
	out, err := a.autoScalingAPI.RecordLifecycleActionHeartbeat(ctx, in, o...)
	a.m.observe("autoscaling", "RecordLifecycleActionHeartbeat", err)
	return out, err
}

func (a *metricsAutoScaling) DescribeAutoScalingInstances(ctx context.Context, in *autoscaling.DescribeAutoScalingInstancesInput, o ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingInstancesOutput, error) {
	out, err := a.autoScalingAPI.DescribeAutoScalingInstances(ctx, in, o...)
	a.m.observe("autoscaling", "DescribeAutoScalingInstances", err)
	return out, err
}

func (a *metricsAutoScaling) CompleteLifecycleAction(ctx context.Context, in *autoscaling.CompleteLifecycleActionInput, o ...func(*autoscaling.Options)) (*autoscaling.CompleteLifecycleActionOutput, error) {
	out, err := a.autoScalingAPI.CompleteLifecycleAction(ctx, in, o...)
	a.m.observe("autoscaling", "CompleteLifecycleAction", err)
	return out, err
}

type metricsEC2 struct {
	ec2API
	m *metrics
}

func (e *metricsEC2) DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, o ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	out, err := e.ec2API.DescribeInstances(ctx, in, o...)
	e.m.observe("ec2", "DescribeInstances", err)
	return out, err
}

func (e *metricsEC2) DescribeInstanceTypes(ctx context.Context, in *ec2.DescribeInstanceTypesInput, o ...func(*ec2.Options)) (*ec2.DescribeInstanceTypesOutput, error) {
	out, err := e.ec2API.DescribeInstanceTypes(ctx, in, o...)
	e.m.observe("ec2", "DescribeInstanceTypes", err)
	return out, err
}

func (e *metricsEC2) DescribeLaunchTemplateVersions(ctx context.Context, in *ec2.DescribeLaunchTemplateVersionsInput, o ...func(*ec2.Options)) (*ec2.DescribeLaunchTemplateVersionsOutput, error) {
	out, err := e.ec2API.DescribeLaunchTemplateVersions(ctx, in, o...)
	e.m.observe("ec2", "DescribeLaunchTemplateVersions", err)
	return out, err
}
