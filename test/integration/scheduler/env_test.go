package scheduler

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	testutils "k8s.io/kubernetes/test/integration/util"

	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// startScheduler runs Ballast's scheduler with the profile of a sample.
func startScheduler(t *testing.T, testCtx *testutils.TestContext, sample string, args map[string]any) {
	t.Helper()
	testenv.StartScheduler(t, testCtx, filepath.Join("config", "samples", sample), args)
}

// waitCondition waits until the pod satisfies ok.
func waitCondition(ctx context.Context, t *testing.T, testCtx *testutils.TestContext, pod *v1.Pod, timeout time.Duration, what string, ok func(*v1.Pod) bool) *v1.Pod {
	t.Helper()
	return testenv.WaitPod(ctx, t, testCtx.ClientSet, pod, timeout, what, ok)
}

func bindLocalVolume(t *testing.T, testCtx *testutils.TestContext, claim, pvName, host string) {
	t.Helper()
	testenv.BindLocalVolume(testCtx.Ctx, t, testCtx.ClientSet, testCtx.NS.Name, claim, pvName, host)
}

var (
	makePod            = testenv.Pod
	scheduledCondition = testenv.ScheduledCondition
	bound              = testenv.Bound
	parkedWith         = testenv.ParkedWith
)

// hopelessEvents counts the Hopeless events about a pod.
func hopelessEvents(ctx context.Context, t *testing.T, testCtx *testutils.TestContext, pod *v1.Pod) int {
	t.Helper()
	evs, err := testCtx.ClientSet.EventsV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs.Items {
		if e.Regarding.Name == pod.Name && e.Reason == "Hopeless" {
			n++
			if e.DeprecatedCount > 1 || (e.Series != nil && e.Series.Count > 1) {
				n += 1000
			}
		}
	}
	return n
}

// waitEvent waits for an event with reason whose note contains substr.
func waitEvent(t *testing.T, testCtx *testutils.TestContext, reason, substr string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(testCtx.Ctx, 200*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := testCtx.ClientSet.EventsV1().Events(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, e := range evs.Items {
			if e.Reason == reason && strings.Contains(e.Note, substr) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s event mentioning %q: %v", reason, substr, err)
	}
}
