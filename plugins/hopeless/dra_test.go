package hopeless

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	"k8s.io/utils/ptr"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

func deviceClass(name, extended string) *resourceapi.DeviceClass {
	dc := &resourceapi.DeviceClass{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if extended != "" {
		dc.Spec.ExtendedResourceName = ptr.To(extended)
	}
	return dc
}

func TestDeviceClassHint(t *testing.T) {
	implicit := st.MakePod().Req(map[v1.ResourceName]string{"deviceclass.resource.kubernetes.io/fpga.example.com": "1"}).Obj()
	explicit := st.MakePod().Req(map[v1.ResourceName]string{"example.com/dra-gpu": "2"}).Obj()
	plain := st.MakePod().Req(map[v1.ResourceName]string{v1.ResourceCPU: "1"}).Obj()
	tests := []struct {
		name     string
		pod      *v1.Pod
		old, new *resourceapi.DeviceClass
		want     fwk.QueueingHint
	}{
		{"new class maps the implicit name", implicit, nil, deviceClass("fpga.example.com", ""), fwk.Queue},
		{"new class maps the explicit name", explicit, nil, deviceClass("gpu.example.com", "example.com/dra-gpu"), fwk.Queue},
		{"update adds the explicit name", explicit, deviceClass("gpu.example.com", ""), deviceClass("gpu.example.com", "example.com/dra-gpu"), fwk.Queue},
		{"update keeps the mapping", explicit, deviceClass("gpu.example.com", "example.com/dra-gpu"), deviceClass("gpu.example.com", "example.com/dra-gpu"), fwk.QueueSkip},
		{"another class", implicit, nil, deviceClass("gpu.example.com", "example.com/dra-gpu"), fwk.QueueSkip},
		{"pod requests no extended resource", plain, nil, deviceClass("fpga.example.com", ""), fwk.QueueSkip},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, _ := ktesting.NewTestContext(t)
			var oldObj interface{}
			if tt.old != nil {
				oldObj = tt.old
			}
			got, err := (&HopelessPods{}).isSchedulableAfterDeviceClassChange(logger, tt.pod, oldObj, tt.new)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("hint (-want, +got):\n%s", diff)
			}
		})
	}
}

// TestDeviceClassDecidesVerdict: an extended resource no node advertises is
// hopeless until a DeviceClass maps it, and hopeless again once it goes.
func TestDeviceClassDecidesVerdict(t *testing.T) {
	opts := shapes.FeatureOptions(utilfeature.DefaultFeatureGate)
	opts.IdentityLabels = sets.New(v1.LabelHostname)
	pl := &HopelessPods{store: shapes.NewStore(opts, false)}
	pl.store.UpsertNode(st.MakeNode().Name("n1").Capacity(map[v1.ResourceName]string{v1.ResourceCPU: "4", v1.ResourcePods: "110"}).Obj())
	for _, name := range []v1.ResourceName{"example.com/dra-gpu", "deviceclass.resource.kubernetes.io/gpu.example.com"} {
		t.Run(string(name), func(t *testing.T) {
			req := shapes.NewRequirements(st.MakePod().Req(map[v1.ResourceName]string{name: "1"}).Obj(), nil, pl.store.Options())
			if v := pl.store.Evaluate(req); !v.Hopeless {
				t.Fatalf("no node advertises %s and no class maps it: want hopeless, got %+v", name, v)
			}
			pl.deviceClassChanged(deviceClass("gpu.example.com", "example.com/dra-gpu"), false)
			if v := pl.store.Evaluate(req); v.Hopeless {
				t.Fatalf("a DeviceClass maps %s: want it left to the scheduler, got %+v", name, v)
			}
			pl.deviceClassChanged(deviceClass("gpu.example.com", "example.com/dra-gpu"), true)
			if v := pl.store.Evaluate(req); !v.Hopeless {
				t.Fatalf("the class is gone: want hopeless again, got %+v", v)
			}
		})
	}
}
