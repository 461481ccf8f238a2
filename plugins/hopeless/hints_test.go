package hopeless

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
)

func TestEventsToRegister(t *testing.T) {
	evs, err := (&HopelessPods{}).EventsToRegister(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []fwk.ClusterEvent
	for _, e := range evs {
		got = append(got, e.Event)
		if e.QueueingHintFn == nil {
			t.Errorf("event %v has no QueueingHintFn", e.Event)
		}
	}
	// Node events, claims and volumes are the release path's (release.go):
	// each registered event makes the queue visit every parked pod.
	want := []fwk.ClusterEvent{
		{Resource: fwk.TargetPod, ActionType: fwk.UpdatePodToleration | fwk.UpdatePodScaleDown | fwk.UpdatePodScaleUp | fwk.UpdatePodSchedulingGatesEliminated | fwk.UpdatePodGeneratedResourceClaim},
		{Resource: fwk.DeviceClass, ActionType: fwk.Add | fwk.Update},
		{Resource: fwk.ResourceSlice, ActionType: fwk.Add | fwk.Update},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("registered events (-want, +got):\n%s", diff)
	}
}

func resized(pod *v1.Pod, cpu string) *v1.Pod {
	p := pod.DeepCopy()
	p.Spec.Containers[0].Resources.Requests[v1.ResourceCPU] = resource.MustParse(cpu)
	return p
}

func withToleration(pod *v1.Pod, tol v1.Toleration) *v1.Pod {
	p := pod.DeepCopy()
	p.Spec.Tolerations = append(p.Spec.Tolerations, tol)
	return p
}

// Every update of the pod itself: a toleration added, a resize through
// pods/resize (the v1.37.2 queue emits UpdatePodScaleDown for it,
// framework.PodSchedulingPropertiesChange), another pod's update.
func TestIsSchedulableAfterPodChange(t *testing.T) {
	cron, big := cronPod("report"), bigPod("big", "64")
	tests := []struct {
		name     string
		pod      *v1.Pod
		parked   bool // parked (PreEnqueue) before the update
		unsynced bool
		oldObj   interface{}
		newObj   interface{}
		want     fwk.QueueingHint
		wantErr  string
		// reported is the message the parked pod is re-reported with; "": none.
		reported string
	}{
		{name: "toleration that fixes it", pod: cron, oldObj: cron,
			newObj: withToleration(cron, v1.Toleration{Key: "dedicated", Operator: v1.TolerationOpExists}), want: fwk.Queue},
		{name: "toleration that does not", pod: cron, oldObj: cron,
			newObj: withToleration(cron, v1.Toleration{Key: "other", Operator: v1.TolerationOpExists}), want: fwk.QueueSkip},
		{name: "resized down to fit", pod: big, oldObj: big, newObj: resized(big, "1"), want: fwk.Queue},
		{name: "resized down, still too big", pod: big, oldObj: big, newObj: resized(big, "8"), want: fwk.QueueSkip},
		{name: "resized, still too big, parked: the new reason is reported", pod: big, parked: true, oldObj: big, newObj: resized(big, "8"),
			want: fwk.QueueSkip, reported: "requests cpu=8"},
		{name: "another pod's update", pod: cron, oldObj: big, newObj: resized(big, "1"), want: fwk.QueueSkip},
		{name: "informers not synced: queue, the plugin cannot judge", pod: cron, unsynced: true, oldObj: cron,
			newObj: withToleration(cron, v1.Toleration{Key: "other", Operator: v1.TolerationOpExists}), want: fwk.Queue},
		{name: "not a pod", pod: cron, oldObj: nil, newObj: makeNode("n").Obj(), want: fwk.Queue, wantErr: "expected *v1.Pod, but got *v1.Node"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, ctx := ktesting.NewTestContext(t)
			p := newPlainPlugin(poolNode("b1", "batch", batchTaint), makeNode("n1").Obj())
			if tt.parked {
				if s := p.PreEnqueue(ctx, tt.pod); s.Code() != fwk.UnschedulableAndUnresolvable {
					t.Fatalf("PreEnqueue: %v, want the pod parked", s)
				}
			}
			p.synced = !tt.unsynced
			before := len(p.reporter.reports)
			got, err := p.isSchedulableAfterPodChange(logger, tt.pod, tt.oldObj, tt.newObj)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("hint (-want, +got):\n%s", diff)
			}
			reports := p.reporter.reports[before:]
			switch {
			case tt.reported == "" && len(reports) != 0:
				t.Errorf("reported %+v, want nothing", reports)
			case tt.reported != "" && (len(reports) != 1 || !strings.Contains(reports[0].message, tt.reported) || !reports[0].gated):
				t.Errorf("reported %+v, want one gated report saying %q", reports, tt.reported)
			}
		})
	}
}

func TestIsSchedulableAfterDeviceClassChange(t *testing.T) {
	implicit := st.MakePod().Req(map[v1.ResourceName]string{"deviceclass.resource.kubernetes.io/fpga.example.com": "1"}).Obj()
	explicit := st.MakePod().Req(map[v1.ResourceName]string{"example.com/dra-gpu": "2"}).Obj()
	plain := st.MakePod().Req(map[v1.ResourceName]string{v1.ResourceCPU: "1"}).Obj()
	tests := []struct {
		name     string
		pod      *v1.Pod
		old, new interface{}
		want     fwk.QueueingHint
		wantErr  string
	}{
		{name: "new class maps the implicit name", pod: implicit, new: deviceClass("fpga.example.com", ""), want: fwk.Queue},
		{name: "new class maps the explicit name", pod: explicit, new: deviceClass("gpu.example.com", "example.com/dra-gpu"), want: fwk.Queue},
		{name: "update adds the explicit name", pod: explicit, old: deviceClass("gpu.example.com", ""), new: deviceClass("gpu.example.com", "example.com/dra-gpu"), want: fwk.Queue},
		{name: "update keeps the mapping", pod: explicit, old: deviceClass("gpu.example.com", "example.com/dra-gpu"), new: deviceClass("gpu.example.com", "example.com/dra-gpu"), want: fwk.QueueSkip},
		{name: "another class", pod: implicit, new: deviceClass("gpu.example.com", "example.com/dra-gpu"), want: fwk.QueueSkip},
		{name: "pod requests no extended resource", pod: plain, new: deviceClass("fpga.example.com", ""), want: fwk.QueueSkip},
		{name: "not a DeviceClass", pod: explicit, new: makeNode("n").Obj(), want: fwk.Queue, wantErr: "expected *v1.DeviceClass, but got *v1.Node"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, _ := ktesting.NewTestContext(t)
			got, err := (&HopelessPods{}).isSchedulableAfterDeviceClassChange(logger, tt.pod, tt.old, tt.new)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("hint (-want, +got):\n%s", diff)
			}
		})
	}
}

func TestIsSchedulableAfterResourceSliceChange(t *testing.T) {
	dra := makePod("trainer").Req(map[v1.ResourceName]string{"example.com/dra-gpu": "1"}).Obj()
	implicit := makePod("fpga").Req(map[v1.ResourceName]string{"deviceclass.resource.kubernetes.io/fpga.example.com": "1"}).Obj()
	tests := []struct {
		name     string
		pod      *v1.Pod
		classes  []*resourceapi.DeviceClass
		unsynced bool
		want     fwk.QueueingHint
	}{
		{name: "pod requests nothing DRA can allocate", pod: bigPod("big", "64"), want: fwk.QueueSkip},
		{name: "no class maps the name: still hopeless", pod: dra, want: fwk.QueueSkip},
		{name: "a class maps the name", pod: dra, classes: []*resourceapi.DeviceClass{deviceClass("gpu.example.com", "example.com/dra-gpu")}, want: fwk.Queue},
		{name: "a class maps the implicit name", pod: implicit, classes: []*resourceapi.DeviceClass{deviceClass("fpga.example.com", "")}, want: fwk.Queue},
		{name: "informers not synced", pod: dra, unsynced: true, want: fwk.Queue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, _ := ktesting.NewTestContext(t)
			p := newPlainPlugin(makeNode("n1").Obj())
			for _, dc := range tt.classes {
				p.store.UpsertDeviceClass(dc)
			}
			p.synced = !tt.unsynced
			got, err := p.isSchedulableAfterResourceSliceChange(logger, tt.pod, nil, &resourceapi.ResourceSlice{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("hint (-want, +got):\n%s", diff)
			}
		})
	}
}

// The hints the plugin registers are the ones tested above, reached through
// EventsToRegister as the queue reaches them.
func TestRegisteredHintsAreThePlugins(t *testing.T) {
	p := newPlainPlugin(makeNode("n1").Obj())
	evs, err := p.EventsToRegister(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	logger, _ := ktesting.NewTestContext(t)
	big := bigPod("big", "64")
	for _, e := range evs {
		if e.Event.Resource != fwk.TargetPod {
			continue
		}
		got, err := e.QueueingHintFn(logger, big, big, resized(big, "1"))
		if err != nil || got != fwk.Queue {
			t.Errorf("the registered pod hint for a resize to fit: %v, %v; want Queue", got, err)
		}
		return
	}
	t.Fatalf("no pod event registered: a resized parked pod waits for the 5-minute flush")
}

// Every registered hint queues a pod being deleted (parked no more), where
// it would keep the same pod, not being deleted, where it is: for
// PreEnqueue to let it through and the cycle to drop it.
func TestRegisteredHintsQueueDeletingPods(t *testing.T) {
	p := newPlainPlugin(makeNode("n1").Obj())
	p.synced = true
	evs, err := p.EventsToRegister(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	logger, _ := ktesting.NewTestContext(t)
	// Hopeless for each registered event: no class maps its DRA-able name.
	pod := makePod("trainer").Req(map[v1.ResourceName]string{"example.com/dra-gpu": "1"}).Obj()
	class := deviceClass("gpu.example.com", "")
	objects := map[fwk.EventResource][2]interface{}{
		fwk.TargetPod:     {pod, pod},
		fwk.DeviceClass:   {class, class},
		fwk.ResourceSlice: {nil, &resourceapi.ResourceSlice{}},
	}
	for _, e := range evs {
		objs, ok := objects[e.Event.Resource]
		if !ok {
			t.Fatalf("no objects for the registered event %v: add them", e.Event.Resource)
		}
		if got, err := e.QueueingHintFn(logger, pod, objs[0], objs[1]); err != nil || got != fwk.QueueSkip {
			t.Errorf("%v hint for the hopeless pod: %v, %v; want QueueSkip", e.Event.Resource, got, err)
		}
		deleting := deletingPod(pod)
		if e.Event.Resource == fwk.TargetPod {
			objs[1] = deleting
		}
		if got, err := e.QueueingHintFn(logger, deleting, objs[0], objs[1]); err != nil || got != fwk.Queue {
			t.Errorf("%v hint for the pod being deleted: %v, %v; want Queue", e.Event.Resource, got, err)
		}
	}
}

// registeredHint is the hint the plugin registers for resource.
func registeredHint(t *testing.T, pl *HopelessPods, resource fwk.EventResource) fwk.QueueingHintFn {
	t.Helper()
	evs, err := pl.EventsToRegister(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Event.Resource == resource {
			return e.QueueingHintFn
		}
	}
	t.Fatalf("no %v event registered", resource)
	return nil
}

// deletingPod is a copy of pod whose delete has started.
func deletingPod(pod *v1.Pod) *v1.Pod {
	p := pod.DeepCopy()
	p.DeletionTimestamp = &metav1.Time{}
	return p
}
