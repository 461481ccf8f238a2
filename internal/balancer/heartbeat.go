package balancer

import (
	"context"
	"sync"

	"k8s.io/klog/v2"
)

// heldInstance is a termination the balancer holds with its hook.
type heldInstance struct{ group, instance string }

// heldSet is what the last loop decided to hold, read by the heartbeat timer.
type heldSet struct {
	mu  sync.Mutex
	set map[heldInstance]bool
}

func (h *heldSet) replace(set map[heldInstance]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.set = set
}

func (h *heldSet) list() []heldInstance {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]heldInstance, 0, len(h.set))
	for k := range h.set {
		out = append(out, k)
	}
	return out
}

// heartbeatLoop heartbeats the terminations the last loop held, every
// HeartbeatInterval, without the loop's lock: a loop slowed down by a split,
// by throttling or by thousands of volumes must not let them time out.
func (b *Balancer) heartbeatLoop(ctx context.Context) {
	logger := klog.FromContext(ctx)
	t := b.clock.NewTicker(b.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		for _, h := range b.held.list() {
			// An instance the loop let go meanwhile answers ValidationError: harmless.
			if err := b.cloud.RecordLifecycleActionHeartbeat(ctx, h.group, HookName, h.instance); err != nil {
				logger.V(2).Info("Heartbeat from the timer failed; the next loop decides again", "group", h.group, "instance", h.instance, "err", err)
			}
		}
	}
}
