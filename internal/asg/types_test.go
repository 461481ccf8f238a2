package asg

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestAllocatable(t *testing.T) {
	tests := []struct {
		it   InstanceType
		want v1.ResourceList
	}{
		{InstanceType{Name: "t3.medium", VCPU: 2, MemoryMiB: 4096}, v1.ResourceList{v1.ResourceCPU: resource.MustParse("1930m"), v1.ResourceMemory: resource.MustParse("3741Mi")}},
		{InstanceType{Name: "m5.xlarge", VCPU: 4, MemoryMiB: 16384}, v1.ResourceList{v1.ResourceCPU: resource.MustParse("3920m"), v1.ResourceMemory: resource.MustParse("16029Mi")}},
		{InstanceType{Name: "m5.24xlarge", VCPU: 96, MemoryMiB: 393216}, v1.ResourceList{v1.ResourceCPU: resource.MustParse("95690m"), v1.ResourceMemory: resource.MustParse("392861Mi")}},
		{InstanceType{Name: "p3.2xlarge", VCPU: 8, MemoryMiB: 62464, NvidiaGPUs: 1}, v1.ResourceList{v1.ResourceCPU: resource.MustParse("7910m"), v1.ResourceMemory: resource.MustParse("62109Mi"), "nvidia.com/gpu": resource.MustParse("1")}},
		{InstanceType{Name: "tiny", VCPU: 1, MemoryMiB: 256}, v1.ResourceList{v1.ResourceCPU: resource.MustParse("940m"), v1.ResourceMemory: resource.MustParse("0")}},
	}
	for _, tc := range tests {
		t.Run(tc.it.Name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.it.Allocatable(), cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })); diff != "" {
				t.Errorf("Allocatable (-want, +got):\n%s", diff)
			}
		})
	}
}

func TestParseProviderID(t *testing.T) {
	tests := []struct {
		id, zone, instance string
		wantErr            bool
	}{
		{id: "aws:///us-east-1a/i-0123456789abcdef0", zone: "us-east-1a", instance: "i-0123456789abcdef0"},
		{id: "aws:////i-0abc", instance: "i-0abc"},
		{id: "aws:///us-east-1a/", wantErr: true},
		{id: "gce://p/z/n", wantErr: true},
		{id: "aws:///us-east-1a/fargate-ip-10-0-0-1", wantErr: true},
		{id: "aws:///a/b/i-1", wantErr: true},
		{id: "", wantErr: true},
	}
	for _, tc := range tests {
		zone, instance, err := ParseProviderID(tc.id)
		if (err != nil) != tc.wantErr || zone != tc.zone || instance != tc.instance {
			t.Errorf("ParseProviderID(%q) = %q, %q, %v; want %q, %q, error %t", tc.id, zone, instance, err, tc.zone, tc.instance, tc.wantErr)
		}
	}
}
