package balancer

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/ballast-k8s/ballast/internal/awstest"
)

// bigCluster seeds 200 groups (a quarter of them spread over three zones) of
// 25 instances, 5000 nodes and 10000 volumes: two bound local volumes on each
// of 4000 nodes, 1000 released and 1000 available ones.
func bigCluster(tb testing.TB) *fixture {
	tb.Helper()
	var objs []runtime.Object
	f := newFixture(tb)
	for g := range 200 {
		spec := awstest.GroupSpec{Name: fmt.Sprintf("pool-%03d", g), MaxSize: 50, InstanceType: "i3.xlarge", Tags: caTags(map[string]string{tagLabelPrefix + "pool": fmt.Sprint(g % 7)})}
		if g%4 == 0 {
			spec.Zones, spec.Instances = zones, map[string]int{zones[0]: 9, zones[1]: 8, zones[2]: 8}
		} else {
			spec.Zones, spec.Instances = zones[g%3:g%3+1], map[string]int{zones[g%3]: 25}
		}
		for z, ids := range f.emu.CreateGroup(spec) {
			for _, id := range ids {
				objs = append(objs, node("ip-"+id, z, id))
			}
		}
	}
	for i, o := range objs[:4000] {
		n := o.(*v1.Node).Name
		objs = append(objs, localPV(fmt.Sprintf("pv-%05d-0", i), n, v1.VolumeBound), localPV(fmt.Sprintf("pv-%05d-1", i), n, v1.VolumeBound))
	}
	for i, o := range objs[4000:5000] {
		n := o.(*v1.Node).Name
		released := localPV(fmt.Sprintf("pv-released-%04d", i), n, v1.VolumeReleased)
		available := localPV(fmt.Sprintf("pv-available-%04d", i), n, v1.VolumeAvailable)
		available.Spec.ClaimRef = nil
		objs = append(objs, released, available)
	}
	// Not NewClientset: its field-managed tracker builds a REST mapper of the
	// whole scheme on every Patch, 9 of the 10 CPU seconds of the first loop's
	// 4000 node patches. The balancer writes only merge patches of
	// annotations, which both trackers apply alike; nothing here reads
	// managedFields.
	f.kube = fake.NewSimpleClientset(objs...) //nolint:staticcheck // SA1019: see above
	f.b.kube = f.kube
	f.b.recorder = &record.FakeRecorder{} // discard
	return f
}

func calls(f *fixture) int {
	n := 0
	for _, c := range f.emu.Counts() {
		n += c
	}
	return n
}

// TestCallsBounded: AWS calls of a loop grow with groups, never with nodes or
// volumes, and a steady loop only lists the groups.
func TestCallsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("5000 nodes")
	}
	ctx := klog.NewContext(context.Background(), klog.Background().V(1))
	f := bigCluster(t)
	if err := f.b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	first := f.emu.Counts()
	// Per group at most: one suspend, one protection batch of 25, one hook
	// lookup and one put; plus the group pages and one instance-type call.
	const groups = 200
	if got, limit := calls(f), 4*groups+2+1; got > limit {
		t.Errorf("first loop made %d AWS calls (%v), want at most %d", got, first, limit)
	}
	if got := first["SuspendProcesses"]; got != groups/4 {
		t.Errorf("%d SuspendProcesses, want %d", got, groups/4)
	}
	if got := len(protectedAll(f)); got != 4000 {
		t.Errorf("%d protected instances, want 4000", got)
	}
	f.emu.Reset()
	f.clock.Step(30 * time.Second)
	if err := f.b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.emu.Counts(); calls(f) > 2 {
		t.Errorf("steady loop made AWS calls %v, want only the 2 pages of DescribeAutoScalingGroups", got)
	}
}

func protectedAll(f *fixture) []string {
	var out []string
	for g := range 200 {
		out = append(out, protected(f, fmt.Sprintf("pool-%03d", g))...)
	}
	return out
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkReconcile is one steady loop over 200 groups, 5000 nodes and 10000
// volumes. cpu-ns/loop includes the emulator's side of the HTTP calls, which
// runs in the same process.
func BenchmarkReconcile(b *testing.B) {
	ctx := klog.NewContext(context.Background(), klog.Background().V(1))
	f := bigCluster(b)
	cpu0, start := cpuTime(), time.Now()
	if err := f.b.Reconcile(ctx); err != nil {
		b.Fatal(err)
	}
	// ResetTimer drops reported metrics, so the first loop is logged.
	b.Logf("first loop: %s wall, %s CPU, AWS calls %v", time.Since(start).Round(time.Millisecond), (cpuTime() - cpu0).Round(time.Millisecond), f.emu.Counts())
	f.emu.Reset()
	b.ResetTimer()
	cpu0 = cpuTime()
	for b.Loop() {
		f.clock.Step(30 * time.Second)
		if err := f.b.Reconcile(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/loop")
	b.ReportMetric(float64(calls(f))/float64(b.N), "aws-calls/loop")
}
