// Package asg is the narrow view of Amazon EC2 Auto Scaling and EC2 that
// az-balancer needs, over the aws-sdk-go-v2 clients. It holds no policy.
package asg

import (
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

const (
	// ProcessAZRebalance is the scaling process that terminates instances to even out zones.
	ProcessAZRebalance = "AZRebalance"
	// TransitionTerminating is the lifecycle transition of termination hooks.
	TransitionTerminating = "autoscaling:EC2_INSTANCE_TERMINATING"
	// StateTerminatingWait is the lifecycle state of an instance held by a termination hook.
	StateTerminatingWait = "Terminating:Wait"
	// StateInService, StateEnteringStandby and StateStandby are the lifecycle
	// states in which SetInstanceProtection accepts an instance; one in any
	// other state fails the whole call.
	StateInService       = "InService"
	StateEnteringStandby = "EnteringStandby"
	StateStandby         = "Standby"

	// TagAutoDiscoveryEnabled is cluster-autoscaler's auto-discovery tag key.
	TagAutoDiscoveryEnabled = "k8s.io/cluster-autoscaler/enabled"
	// TagClusterPrefix + <cluster name> is its per-cluster tag key.
	TagClusterPrefix = "k8s.io/cluster-autoscaler/"
	// ResultContinue lets a held termination proceed. For termination hooks
	// ABANDON terminates as well; only the launch transition tells them apart.
	ResultContinue = "CONTINUE"

	// Limits documented in the API references.
	maxProtectionBatch   = 50   // SetInstanceProtection: 50 instance ids per call
	maxGroupNamesPerCall = 100  // DescribeAutoScalingGroups: as cluster-autoscaler batches them
	maxGroupsPerPage     = 100  // DescribeAutoScalingGroups MaxRecords upper bound
	maxInstancesPerPage  = 1000 // DescribeInstances MaxResults upper bound
	maxTypesPerCall      = 100  // DescribeInstanceTypes: instance types per request
)

// Selector says which groups to describe: explicit names, or all groups that
// carry every one of the tag keys (cluster-autoscaler's auto-discovery).
type Selector struct {
	Names   []string
	TagKeys []string
	// TagValues are values some of TagKeys must have for the balancer to
	// manage a group; a group described by its keys with another value is
	// reported, not managed.
	TagValues map[string]string
}

// AutoDiscovery is the selector of cluster-autoscaler's
// --node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/<cluster>.
// cluster-autoscaler matches the keys whatever their values; the balancer
// describes the same groups but manages only those whose enabled tag is
// "true", which is what its IAM policy's conditions allow it to change
// (deploy/az-balancer/iam-policy.json).
func AutoDiscovery(cluster string) Selector {
	return Selector{
		TagKeys:   []string{TagAutoDiscoveryEnabled, TagClusterPrefix + cluster},
		TagValues: map[string]string{TagAutoDiscoveryEnabled: "true"},
	}
}

// Group is an Auto Scaling group as the balancer sees it.
type Group struct {
	Name               string
	Zones              []string
	MinSize, MaxSize   int32
	DesiredCapacity    int32
	Tags               map[string]string
	Instances          []GroupInstance
	SuspendedProcesses []string
	// LaunchTemplate is the id or name and version of the group's launch
	// template, empty when it uses a mixed instances policy or a launch configuration.
	LaunchTemplate LaunchTemplateRef
	// OverrideTypes are the instance types of a mixed instances policy.
	OverrideTypes []string
}

// Suspended reports whether the process is suspended on the group.
func (g *Group) Suspended(process string) bool {
	for _, p := range g.SuspendedProcesses {
		if p == process {
			return true
		}
	}
	return false
}

// GroupInstance is an instance as its group reports it.
type GroupInstance struct {
	ID                   string
	Zone                 string
	InstanceType         string
	LifecycleState       string
	ProtectedFromScaleIn bool
}

// LaunchTemplateRef names one version of a launch template.
type LaunchTemplateRef struct {
	ID, Name, Version string
}

// Hook is a lifecycle hook of a group.
type Hook struct {
	Group, Name      string
	Transition       string
	HeartbeatTimeout int32 // seconds
	GlobalTimeout    int32 // seconds, set by AWS
	DefaultResult    string
	// NotificationTargetARN (an SQS queue or SNS topic), RoleARN (the role
	// that lets Auto Scaling publish to it) and NotificationMetadata are how
	// the hook's consumer hears of the instances it holds; empty when the
	// hook has none (its consumer uses EventBridge, or the API, as the
	// balancer's own hook does).
	NotificationTargetARN, RoleARN, NotificationMetadata string
}

// Instance is an EC2 instance.
type Instance struct {
	ID, Zone, InstanceType string
	ImageID                string // the AMI it was launched from
	State                  string // pending, running, shutting-down, terminated, stopping, stopped
}

// InstanceType holds what the node template needs of an EC2 instance type.
type InstanceType struct {
	Name          string
	VCPU          int32
	MemoryMiB     int64
	Architectures []string // as EC2 spells them: x86_64, arm64, i386
	NvidiaGPUs    int32
}

// Allocatable estimates what kubelet leaves to pods on the instance type.
//
// CPU: the kube-reserved formula of the EKS-optimized AMIs (and GKE): 6% of
// the first core, 1% of the second, 0.5% of the next two, 0.25% of the rest.
// Memory: 255Mi kube-reserved + 100Mi hard eviction threshold, which is the
// lower bound of the EKS AMI formula (255Mi + 11Mi per max pod). This is
// what a launched node offers (the e2e harness registers its nodes with it);
// templates use TemplateAllocatable, cluster-autoscaler's larger view, so
// that Ballast never parks a pod CA would add a node for.
func (t *InstanceType) Allocatable() v1.ResourceList {
	milli := int64(t.VCPU) * 1000
	// In millicores; the 0.25% share is summed before rounding down, so the
	// estimate never reserves more than kubelet does.
	var reserved int64
	n := int64(t.VCPU)
	switch {
	case n >= 4:
		reserved = 60 + 10 + 2*5 + (n-4)*25/10
	case n >= 2:
		reserved = 60 + 10 + (n-2)*5
	case n == 1:
		reserved = 60
	}
	mem := (t.MemoryMiB - 255 - 100) * 1024 * 1024
	out := v1.ResourceList{
		v1.ResourceCPU:    *resource.NewMilliQuantity(max(milli-reserved, 0), resource.DecimalSI),
		v1.ResourceMemory: *resource.NewQuantity(max(mem, 0), resource.BinarySI),
	}
	if t.NvidiaGPUs > 0 {
		out["nvidia.com/gpu"] = *resource.NewQuantity(int64(t.NvidiaGPUs), resource.DecimalSI)
	}
	return out
}

// TemplateAllocatable is what cluster-autoscaler's template node of a group
// of this instance type offers pods, which is what CA scales up for: CA
// 1.36.1's AWS provider sets allocatable to capacity (vCPUs, the memory of
// the instance type, GPUs) and places a kube-proxy pod requesting 100m CPU
// on the template. A launched node offers less (kubelet's reservations: see
// Allocatable), so a pod in between makes CA add a node that cannot host it;
// it is still not Ballast's to park: CA could add a node for it.
func (t *InstanceType) TemplateAllocatable() v1.ResourceList {
	out := v1.ResourceList{
		v1.ResourceCPU:    *resource.NewMilliQuantity(max(int64(t.VCPU)*1000-kubeProxyMilliCPU, 0), resource.DecimalSI),
		v1.ResourceMemory: *resource.NewQuantity(t.MemoryMiB*1024*1024, resource.BinarySI),
	}
	if t.NvidiaGPUs > 0 {
		out["nvidia.com/gpu"] = *resource.NewQuantity(int64(t.NvidiaGPUs), resource.DecimalSI)
	}
	return out
}

// kubeProxyMilliCPU is the request of the kube-proxy pod cluster-autoscaler
// puts on every AWS template node.
const kubeProxyMilliCPU = 100

// KubeArch maps EC2 architecture names to kubernetes.io/arch values.
func (t *InstanceType) KubeArch() string {
	for _, a := range t.Architectures {
		switch a {
		case "x86_64":
			return "amd64"
		case "arm64":
			return "arm64"
		}
	}
	return "amd64"
}

// ParseProviderID returns the zone and instance id of an AWS providerID,
// aws:///<zone>/<instance-id> (the zone may be empty: aws:////i-0abc).
func ParseProviderID(id string) (zone, instance string, err error) {
	const prefix = "aws://"
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok {
		return "", "", fmt.Errorf("providerID %q is not aws://", id)
	}
	// rest is "/<zone>/<instance>" or "/<instance>"
	var parts []string
	for _, p := range strings.Split(rest, "/") {
		if p != "" {
			parts = append(parts, p)
		}
	}
	switch len(parts) {
	case 1:
		instance = parts[0]
	case 2:
		zone, instance = parts[0], parts[1]
	default:
		return "", "", fmt.Errorf("providerID %q is not aws:///<zone>/<instance-id>", id)
	}
	if !strings.HasPrefix(instance, "i-") || len(instance) < 3 {
		return "", "", fmt.Errorf("providerID %q does not end in an instance id", id)
	}
	return zone, instance, nil
}
