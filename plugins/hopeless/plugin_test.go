package hopeless

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// The plugin wired on a real framework handle judges from its informers:
// it parks a hopeless pod and narrows a feasible one, and lets the
// hopeless one through once the cluster has a node that fits.
func TestPluginOnAFramework(t *testing.T) {
	f := newTestPlugin(t, `{"narrowFilter":true}`,
		poolNode("b1", "batch", batchTaint), poolNode("gpu-1", "gpu"), poolNode("w1", "web"), poolNode("w2", "web"))
	state := framework.NewCycleState()
	hopeless := cronPod("report-1")
	f.createPod(t, hopeless)
	status := f.plugin.PreEnqueue(f.ctx, hopeless)
	if status.Code() != fwk.UnschedulableAndUnresolvable || !strings.HasPrefix(status.Message(), shapes.MessagePrefix) ||
		!strings.Contains(status.Message(), "tolerates taint dedicated=batch:NoSchedule") {
		t.Fatalf("PreEnqueue of a hopeless pod: %v", status)
	}
	if _, s := f.plugin.PreFilter(f.ctx, state, hopeless, nil); s.Code() != fwk.UnschedulableAndUnresolvable {
		t.Fatalf("PreFilter of a hopeless pod: %v", s)
	}
	if got := f.plugin.parking.lot.len(); got != 1 {
		t.Fatalf("parked %d pods, want 1", got)
	}
	gpu := makePod("trainer").NodeSelector(map[string]string{"pool": "gpu"}).Obj()
	res, s := f.plugin.PreFilter(f.ctx, state, gpu, nil)
	if !s.IsSuccess() || res == nil {
		t.Fatalf("PreFilter of a feasible pod: %v %v", res, s)
	}
	if diff := cmp.Diff(sets.New("gpu-1"), res.NodeNames); diff != "" {
		t.Errorf("narrowed nodes (-want, +got):\n%s", diff)
	}
	f.store.UpsertNode(poolNode("b9", "batch", batchjobsTaint))
	if s := f.plugin.PreEnqueue(f.ctx, hopeless); !s.IsSuccess() {
		t.Fatalf("PreEnqueue with a fitting node: %v", s)
	}
	if f.plugin.parking.lot.len() != 0 {
		t.Fatalf("a pod let through must not count as parked")
	}
}

func TestNew(t *testing.T) {
	schedmetrics.Register()
	tests := []struct {
		name    string
		args    string
		wantErr string
	}{
		{name: "negative maxTemplateAge", args: `{"maxTemplateAge":"-1s"}`, wantErr: "args.maxTemplateAge"},
		{name: "unknown field", args: `{"bogus":1}`, wantErr: `unknown field "bogus"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ctx := ktesting.NewTestContext(t)
			_, err := New(ctx, &runtime.Unknown{Raw: []byte(tt.args), ContentType: runtime.ContentTypeJSON}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New(%s): error %v, want one naming %q", tt.args, err, tt.wantErr)
			}
		})
	}
}

// BenchmarkVerdict measures one verdict against clusters of 500 to 5000
// nodes in 20 shapes: uncached (a new verdict key) and cached. It must be
// flat in the node count.
func BenchmarkVerdict(b *testing.B) {
	for _, nodes := range []int{500, 2000, 5000} {
		var objs []runtime.Object
		for i := 0; i < nodes; i++ {
			objs = append(objs, poolNode(fmt.Sprintf("n-%d", i), fmt.Sprintf("p%d", i%20)))
		}
		f := newTestPlugin(b, "", objs...)
		if _, shapes, _ := f.store.Counts(); shapes != 20 {
			b.Fatalf("want 20 shapes, got %d", shapes)
		}
		b.Run(fmt.Sprintf("nodes=%d/uncached", nodes), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				pod := cronPod("p")
				pod.Spec.Containers[0].Resources.Requests[v1.ResourceMemory] = *resource.NewQuantity(int64(i+1), resource.BinarySI)
				if v, _, _ := f.plugin.verdicts.judge(pod); !v.Hopeless {
					b.Fatal("want hopeless")
				}
			}
		})
		b.Run(fmt.Sprintf("nodes=%d/cached", nodes), func(b *testing.B) {
			pod := cronPod("p")
			for i := 0; i < b.N; i++ {
				if v, _, _ := f.plugin.verdicts.judge(pod); !v.Hopeless {
					b.Fatal("want hopeless")
				}
			}
		})
	}
}
