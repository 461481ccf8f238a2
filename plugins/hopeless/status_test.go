package hopeless

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
)

func TestStatusWriterOncePerPod(t *testing.T) {
	registerMetrics()
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pod := cronPod("report-1")
	client := fake.NewClientset(pod)
	recorder := events.NewFakeRecorder(100)
	w := newStatusWriter(client, recorder, 1000)
	go w.run(ctx)

	for i := 0; i < 5; i++ {
		w.report(pod, "hopeless: reason A", true)
	}
	var got *v1.Pod
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		got, _ = client.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		return got != nil && hasCondition(got, "hopeless: reason A"), nil
	}); err != nil {
		t.Fatalf("condition not written: %v", got.Status.Conditions)
	}
	patches := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "patch" && a.GetSubresource() == "status" {
			patches++
		}
	}
	if patches != 1 {
		t.Errorf("%d status patches for one parked pod reported 5 times, want 1", patches)
	}
	if n := len(recorder.Events); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
	// A pod parked before any attempt gets its condition; one rejected at
	// PreFilter does not (the scheduler writes it), but still gets the event.
	other := cronPod("report-2")
	w.report(other, "hopeless: reason A", false)
	time.Sleep(200 * time.Millisecond)
	if n := len(recorder.Events); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
}

func TestSignPod(t *testing.T) {
	pl, _ := newTestPlugin(t, "")
	frags, status := pl.SignPod(context.Background(), cronPod("p"))
	if !status.IsSuccess() {
		t.Fatalf("SignPod refused to sign, which turns off upstream batching: %v", status)
	}
	keys := map[string]bool{}
	for _, f := range frags {
		keys[f.Key] = true
	}
	for _, k := range []string{fwk.NodeSelectorSignerName, fwk.NodeAffinitySignerName, fwk.TolerationsSignerName, fwk.VolumesSignerName} {
		if !keys[k] {
			t.Errorf("SignPod lacks fragment %s", k)
		}
	}
}
