package hopeless

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fwk "k8s.io/kube-scheduler/framework"
)

// TestParkedPodBeingDeletedIsLetGo: a pod with a finalizer stays in the API
// server after its delete, with metadata.deletionTimestamp set, until the
// finalizer is removed. kube-scheduler never schedules such a pod
// (skipPodSchedule drops it from the queue with "skip schedule deleting
// pod"); it is not pending any more in any sense a user cares about. A
// parked pod that starts being deleted must leave the lot and its owner's
// count, and not be parked again by a later
// PreEnqueue, neither of the deleting copy (let through, for the scheduler
// to drop as it drops any deleting pod) nor of an older copy the queue
// still holds.
func TestParkedPodBeingDeletedIsLetGo(t *testing.T) {
	f := newTestPlugin(t, "", poolNode("w1", "web"))
	pod := podOwnedBy("report-1", controllerRef("batch/v1", "Job", "report-1"))
	pod.Finalizers = []string{"example.com/keep"}
	f.parkViaPreEnqueue(t, pod)
	before := pod.DeepCopy()

	deleting := pod.DeepCopy()
	now := metav1.NewTime(time.Now())
	deleting.DeletionTimestamp = &now
	deleting.DeletionGracePeriodSeconds = new(int64)
	if _, err := f.client.CoreV1().Pods("default").Update(f.ctx, deleting, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	lister := f.handle.SharedInformerFactory().Core().V1().Pods().Lister()
	waitFor(t, 5*time.Second, "the informer saw the delete start", func() bool {
		p, err := lister.Pods("default").Get(pod.Name)
		return err == nil && p.DeletionTimestamp != nil
	})
	waitFor(t, 5*time.Second, "the pod left the lot", func() bool { return !f.parked(pod) })

	if s := f.plugin.PreEnqueue(f.ctx, deleting); !s.IsSuccess() {
		t.Errorf("PreEnqueue of the deleting pod: %v, want it let through (the scheduler drops deleting pods)", s)
	}
	if f.parked(pod) {
		t.Errorf("the deleting pod was parked again by its PreEnqueue")
	}
	if s := f.plugin.PreEnqueue(f.ctx, before); s.Code() == fwk.UnschedulableAndUnresolvable && f.parked(pod) {
		t.Errorf("an older copy of the deleting pod was parked again")
	}
	want := f.freshOwnerSeries(t)
	got := f.ownerSeriesNow(t)
	if !cmp.Equal(want, got) {
		t.Errorf("owner_parked_pods %v, want %v (a deleting pod is not parked)", got, want)
	}
}
