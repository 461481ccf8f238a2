package hopeless

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// statusWriter tells the user why a pod is parked: one event per pod, and
// for pods parked at PreEnqueue (which the scheduler writes nothing for) the
// PodScheduled condition. Writes are rate limited, off the scheduling path,
// and wait for a lull in binding, so that they compete with binds as little
// as possible.
type statusWriter struct {
	// lastBind is when the plugin last saw a pod get bound (unix nanos):
	// writes wait for a lull in binding, for at most maxDefer.
	lastBind atomic.Int64
	client   kubernetes.Interface
	recorder events.EventRecorderLogger
	limiter  flowcontrol.RateLimiter
	queue    workqueue.TypedInterface[types.UID]

	mu       sync.Mutex
	reported map[types.UID]string
	pending  map[types.UID]statusItem
}

type statusItem struct {
	pod     *v1.Pod
	message string
	gated   bool
}

const (
	// bindQuiet is how long after a bind the writer waits before writing.
	bindQuiet = 300 * time.Millisecond
	// maxDefer bounds how long a write yields to binds.
	maxDefer = 5 * time.Second
)

// noteBind records that a pod was bound just now.
func (w *statusWriter) noteBind() { w.lastBind.Store(time.Now().UnixNano()) }

// yieldToBinds waits while the scheduler is binding pods, up to maxDefer.
func (w *statusWriter) yieldToBinds(ctx context.Context) {
	deadline := time.Now().Add(maxDefer)
	for time.Now().Before(deadline) {
		if time.Since(time.Unix(0, w.lastBind.Load())) > bindQuiet {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(bindQuiet / 3):
		}
	}
}

func newStatusWriter(client kubernetes.Interface, recorder events.EventRecorderLogger, qps float64) *statusWriter {
	burst := int(qps)
	if burst < 1 {
		burst = 1
	}
	return &statusWriter{
		client:   client,
		recorder: recorder,
		limiter:  flowcontrol.NewTokenBucketRateLimiter(float32(qps), burst),
		queue:    workqueue.NewTyped[types.UID](),
		reported: map[types.UID]string{},
		pending:  map[types.UID]statusItem{},
	}
}

// report schedules the event (and condition) for pod, unless this message
// was already reported for it.
func (w *statusWriter) report(pod *v1.Pod, message string, gated bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reported[pod.UID] == message {
		return
	}
	w.reported[pod.UID] = message
	w.pending[pod.UID] = statusItem{pod: pod, message: message, gated: gated}
	w.queue.Add(pod.UID)
}

// forget drops what was reported for a pod that is no longer parked.
func (w *statusWriter) forget(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.reported, uid)
	delete(w.pending, uid)
}

func (w *statusWriter) run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	for {
		uid, shutdown := w.queue.Get()
		if shutdown {
			return
		}
		w.mu.Lock()
		item, ok := w.pending[uid]
		delete(w.pending, uid)
		w.mu.Unlock()
		if ok {
			if err := w.limiter.Wait(ctx); err != nil {
				w.queue.Done(uid)
				return
			}
			w.yieldToBinds(ctx)
			w.write(ctx, item)
		}
		w.queue.Done(uid)
	}
}

func (w *statusWriter) write(ctx context.Context, item statusItem) {
	pod := item.pod
	logger := klog.FromContext(ctx)
	w.recorder.Eventf(pod, nil, v1.EventTypeWarning, EventReason, "Scheduling", item.message)
	if !item.gated || hasCondition(pod, item.message) {
		return
	}
	patch, err := json.Marshal(map[string]any{
		"status": map[string]any{
			"conditions": []v1.PodCondition{{
				Type:               v1.PodScheduled,
				Status:             v1.ConditionFalse,
				Reason:             v1.PodReasonUnschedulable,
				Message:            item.message,
				LastTransitionTime: metav1.NewTime(time.Now()),
			}},
		},
	})
	if err != nil {
		return
	}
	_, err = w.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	switch {
	case err == nil:
		metricStatusWrites.WithLabelValues("ok").Inc()
	case apierrors.IsNotFound(err):
		metricStatusWrites.WithLabelValues("gone").Inc()
	default:
		metricStatusWrites.WithLabelValues("error").Inc()
		logger.Error(err, "Writing PodScheduled condition of a parked pod", "pod", klog.KObj(pod))
		// Let a later PreEnqueue report it again.
		w.mu.Lock()
		if w.reported[pod.UID] == item.message {
			delete(w.reported, pod.UID)
		}
		w.mu.Unlock()
	}
}

func hasCondition(pod *v1.Pod, message string) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && c.Message == message {
			return true
		}
	}
	return false
}
