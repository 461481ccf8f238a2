package demo

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/component-base/metrics/testutil"
	"k8s.io/kubernetes/pkg/scheduler"
	testutils "k8s.io/kubernetes/test/integration/util"

	"github.com/ballast-k8s/ballast/plugins"
	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// incident8 sizes: small enough for a few minutes on 2 cores, large enough
// for the thrashing to show.
const (
	generalNodes = 100
	poolNodes    = 5
	hopelessPods = 1000
	ordinaryPods = 600
)

type run8 struct {
	name           string
	scheduleTime   time.Duration
	throughput     float64
	failedAttempts float64
	withReason     int
}

var batchTaint = v1.Taint{Key: "dedicated", Value: "batch", Effect: v1.TaintEffectNoSchedule}

func createMany(ctx context.Context, t *testing.T, cs kubernetes.Interface, n int, make func(i int) *v1.Pod) {
	t.Helper()
	var failed atomic.Int32
	workqueue.ParallelizeUntil(ctx, 16, n, func(i int) {
		p := make(i)
		if _, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			failed.Add(1)
		}
	})
	if failed.Load() > 0 {
		t.Fatalf("%d pod creations failed", failed.Load())
	}
}

// churnPool re-creates one node of the batch pool every second, as the
// incident's autoscaled pool did, until ctx ends; it counts the nodes it
// re-created in done.
func churnPool(ctx context.Context, cs kubernetes.Interface, wg *sync.WaitGroup, done *atomic.Int32) {
	defer wg.Done()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		name := fmt.Sprintf("batch-%d", i%poolNodes)
		_ = cs.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{})
		if _, err := cs.CoreV1().Nodes().Create(context.Background(), testenv.Node(name, map[string]string{"pool": "batch"}, []v1.Taint{batchTaint}), metav1.CreateOptions{}); err == nil {
			done.Add(1)
		}
	}
}

func failedAttempts(t *testing.T) float64 {
	vals, err := testutil.GetCounterValuesFromGatherer(legacyregistry.DefaultGatherer, "scheduler_schedule_attempts_total",
		map[string]string{"profile": "default-scheduler"}, "result")
	if err != nil {
		return 0
	}
	return vals["unschedulable"] + vals["error"]
}

// replayIncident8 runs the incident under the scheduler configured by
// config and measures it. toldWhy is how many hopeless pods must carry
// Ballast's reason before it counts them (0: count at once).
func replayIncident8(t *testing.T, server *testutils.TestContext, name, config string, toldWhy int) run8 {
	testCtx := testutils.WithNewNamespace(t, server, strings.ToLower(name))
	ctx, cs, ns := testCtx.Ctx, testCtx.ClientSet, testCtx.NS.Name
	cfg := testenv.LoadConfig(t, filepath.Join("test", "integration", "bench", "config", config), nil)
	testutils.InitTestSchedulerWithOptions(t, testCtx, 0, scheduler.WithProfiles(cfg.Profiles...),
		scheduler.WithFrameworkOutOfTreeRegistry(plugins.Registry()))
	testutils.SyncSchedulerInformerFactory(testCtx)
	go testCtx.Scheduler.Run(testCtx.SchedulerCtx)
	defer testCtx.SchedulerCloseFn()

	wrong := []v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "batchjobs", Effect: v1.TaintEffectNoSchedule}}
	createMany(ctx, t, cs, hopelessPods, func(i int) *v1.Pod {
		return testenv.Pod(ns, fmt.Sprintf("report-%d", i), "", map[string]string{"pool": "batch"}, wrong)
	})
	churnCtx, stopChurn := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var churned atomic.Int32
	wg.Add(1)
	go churnPool(churnCtx, cs, &wg, &churned)
	// The pool churns before the ordinary pods come, as in the incident.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return churned.Load() >= 3, nil
	}); err != nil {
		t.Fatalf("%s: the pool was re-created %d times: %v", name, churned.Load(), err)
	}

	before := failedAttempts(t)
	start := time.Now()
	createMany(ctx, t, cs, ordinaryPods, func(i int) *v1.Pod { return testenv.Pod(ns, fmt.Sprintf("web-%d", i), "", nil, nil) })
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return false, nil
		}
		bound := 0
		for _, p := range pods.Items {
			if strings.HasPrefix(p.Name, "web-") && p.Spec.NodeName != "" {
				bound++
			}
		}
		return bound == ordinaryPods, nil
	})
	elapsed := time.Since(start)
	stopChurn()
	wg.Wait()
	if err != nil {
		t.Fatalf("%s: ordinary pods not all scheduled: %v", name, err)
	}
	r := run8{name: name, scheduleTime: elapsed, throughput: float64(ordinaryPods) / elapsed.Seconds(), failedAttempts: failedAttempts(t) - before}
	// Count the hopeless pods that carry Ballast's reason, once toldWhy do
	// (the status writer writes 20 a second, after binding calms down).
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		r.withReason = 0
		for i := range pods.Items {
			if strings.HasPrefix(pods.Items[i].Name, "report-") && testenv.ParkedByBallast(&pods.Items[i]) {
				r.withReason++
			}
		}
		return r.withReason >= toldWhy, nil
	})
	if err != nil {
		t.Fatalf("%s: %d hopeless pods carry Ballast's reason, want at least %d: %v", name, r.withReason, toldWhy, err)
	}
	// Leave nothing behind for the next run.
	_ = cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{})
	return r
}
