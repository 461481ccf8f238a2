package bench

import (
	"context"
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/backend/queue"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/feature"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/names"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/schedulinggates"
	"k8s.io/kubernetes/pkg/scheduler/metrics"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
)

// TestQueueWalk checks, deterministically (the benchmark's throughput is
// too noisy for that), that the scheduling queue this module builds against
// carries the queue patch (hack/kubernetes/patches): a bind, AssignedPod/Add,
// visits none of the 1000 pods that upstream's SchedulingGates plugin holds,
// only the one pod a Filter plugin rejected. With queueWalkEnv=true, as the
// benchmark's vanilla cases run, it visits all 1001, as v1.37.2 does. The
// count is the pods the walk hands to MoveAllToActiveOrBackoffQueue's preCheck.
func TestQueueWalk(t *testing.T) {
	// The queue records its entities in the scheduler's metrics.
	metrics.Register()
	for _, tc := range []struct {
		env  string
		want int
	}{{"", 1}, {"false", 1}, {"true", 1001}, {"not-a-bool", 1}} {
		t.Run(fmt.Sprintf("%s=%q", queueWalkEnv, tc.env), func(t *testing.T) {
			t.Setenv(queueWalkEnv, tc.env)
			logger, ctx := ktesting.NewTestContext(t)
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()

			gates, err := schedulinggates.New(ctx, nil, nil, feature.Features{})
			if err != nil {
				t.Fatal(err)
			}
			events, err := gates.(fwk.EnqueueExtensions).EventsToRegister(ctx)
			if err != nil {
				t.Fatal(err)
			}
			skip := func(klog.Logger, *v1.Pod, interface{}, interface{}) (fwk.QueueingHint, error) {
				return fwk.QueueSkip, nil
			}
			bind := fwk.ClusterEvent{Resource: fwk.AssignedPod, ActionType: fwk.Add}
			hints := queue.QueueingHintMap{bind: {{PluginName: "Fit", QueueingHintFn: skip}}}
			for _, e := range events {
				hints[e.Event] = append(hints[e.Event], &queue.QueueingHintFunction{PluginName: names.SchedulingGates, QueueingHintFn: e.QueueingHintFn})
			}
			q := queue.NewTestQueue(ctx, func(a, b fwk.QueuedEntityInfo) bool { return a.GetTimestamp().Before(b.GetTimestamp()) },
				queue.WithQueueingHintMapPerProfile(queue.QueueingHintMapPerProfile{"": hints}),
				queue.WithPreEnqueuePluginMap(map[string]map[string]fwk.PreEnqueuePlugin{"": {names.SchedulingGates: gates.(fwk.PreEnqueuePlugin)}}))
			defer q.Close()

			q.Add(ctx, st.MakePod().Name("rejected").Namespace("ns").UID("rejected").Obj())
			entity, err := q.Pop(logger)
			if err != nil {
				t.Fatal(err)
			}
			pInfo := entity.(*framework.QueuedPodInfo)
			pInfo.UnschedulablePlugins = sets.New("Fit")
			if err := q.AddUnschedulablePodIfNotPresent(logger, pInfo, q.SchedulingCycle()); err != nil {
				t.Fatal(err)
			}
			for i := range 1000 {
				q.Add(ctx, st.MakePod().Name(fmt.Sprintf("held%d", i)).Namespace("ns").UID(fmt.Sprintf("held%d", i)).SchedulingGates([]string{"example.com/held"}).Obj())
			}
			if n := len(q.UnschedulablePods()); n != 1001 {
				t.Fatalf("%d pods in the unschedulable pool, want 1001", n)
			}

			visited := 0
			q.MoveAllToActiveOrBackoffQueue(logger, bind, nil, st.MakePod().Name("bound").Obj(), func(*v1.Pod) bool {
				visited++
				return true
			})
			if visited != tc.want {
				t.Errorf("a bind visits %d parked pods, want %d", visited, tc.want)
			}
		})
	}
}
