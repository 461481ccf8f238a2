package hopeless

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// A parked pod that is bound or deleted leaves the lot and its
// requirements are dropped; a bind also tells the status writer to yield.
func TestPodEndForgetsIt(t *testing.T) {
	tests := []struct {
		name     string
		end      func(f *testPlugin, pod *v1.Pod) error
		wantBind bool
	}{
		{"bound", func(f *testPlugin, pod *v1.Pod) error {
			bound := pod.DeepCopy()
			bound.Spec.NodeName = "w1"
			_, err := f.client.CoreV1().Pods(pod.Namespace).Update(f.ctx, bound, metav1.UpdateOptions{})
			return err
		}, true},
		{"deleted", func(f *testPlugin, pod *v1.Pod) error {
			return f.client.CoreV1().Pods(pod.Namespace).Delete(f.ctx, pod.Name, metav1.DeleteOptions{})
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestPlugin(t, "", poolNode("w1", "web"))
			pod := cronPod("report-1")
			f.parkViaPreEnqueue(t, pod)
			if err := tt.end(f, pod); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the pod left the lot", func() bool { return !f.parked(pod) })
			if _, ok := f.plugin.verdicts.reqs.Load(pod.UID); ok {
				t.Error("the pod's requirements are kept")
			}
			if bound := f.status.lastBind.Load() != 0; bound != tt.wantBind {
				t.Errorf("status writer saw a bind: %v, want %v", bound, tt.wantBind)
			}
		})
	}
}

func TestUnwrapTombstone(t *testing.T) {
	n := makeNode("n").Obj()
	for name, obj := range map[string]interface{}{
		"object":    n,
		"tombstone": cache.DeletedFinalStateUnknown{Key: "n", Obj: n},
	} {
		if got, ok := unwrapTombstone(obj).(*v1.Node); !ok || got != n {
			t.Errorf("%s: unwrapped %v", name, got)
		}
	}
}

// The wiring waits for every informer it registered on, the node-group
// ConfigMap's included when the cluster autoscales.
func TestWiringSyncsTheConfigMap(t *testing.T) {
	f := newTestPlugin(t, `{"autoscaling":true,"nodeGroupsConfigMap":{"namespace":"kube-system","name":"groups"}}`, poolNode("w1", "web"))
	if f.templates == nil {
		t.Fatal("a cluster that autoscales has no template state")
	}
	// nodes, pods, claims, volumes, DeviceClasses, the ConfigMap.
	if n := len(f.informers.hasSynced); n != 6 {
		t.Errorf("%d informer registrations, want 6", n)
	}
	// No ConfigMap yet: the plugin fails open and parks nothing.
	if v, _, ok := f.plugin.verdicts.judge(cronPod("report-1")); ok {
		t.Errorf("judged %+v without templates, want fail-open", v)
	}
	// The templates arrive through the plugin's own ConfigMap informer.
	cm := gpuGroups(t, time.Now())
	cm.Name = "groups"
	if _, err := f.client.CoreV1().ConfigMaps("kube-system").Create(f.ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the plugin judges with the templates", func() bool {
		_, _, ok := f.plugin.verdicts.judge(cronPod("report-1"))
		return ok
	})
	gpu := makePod("trainer").NodeSelector(map[string]string{"pool": "gpu"}).Obj()
	if v, _, _ := f.plugin.verdicts.judge(gpu); v.Hopeless {
		t.Errorf("a pod that fits the GPU template is hopeless: %+v", v)
	}
	if v, _, _ := f.plugin.verdicts.judge(cronPod("report-1")); !v.Hopeless {
		t.Errorf("a pod that fits no node and no template is not hopeless: %+v", v)
	}
}
