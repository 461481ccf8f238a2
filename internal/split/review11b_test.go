package split_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

// TestSplitReturnsToAFullSplitGroup (review 11b): the fix of review 11 #7
// raises a full zone group's maximum before attaching, but the way back is
// not covered. When AWS refuses a detached instance for its zone's group
// for good, attachOrReturn marks it "!" and attaches it back to the split
// group, "which still has room for them". It has not, always: the split
// group keeps cluster-autoscaler's discovery tags until the split is done,
// so cluster-autoscaler may raise its desired capacity to its maximum
// (Launch is suspended, so no instance comes of it) while the batch is
// detaching. API_AttachInstances: "If the number of instances being
// attached plus the desired capacity of the group exceeds the maximum size
// of the group, the operation fails." Then the attach back fails, and every
// later pass retries it (toReturn) without raising the maximum: the
// instance runs in no group for good, lost to cluster-autoscaler with its
// local volume.
func TestSplitReturnsToAFullSplitGroup(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	zone := split.ZoneGroupName("cassandra", zones[0])
	w.emu.Inject(awstest.Fault{Service: "autoscaling", Action: "AttachInstances", Group: zone, Code: "ValidationError", Status: http.StatusBadRequest, Times: 1000})
	lt := &lockTripper{}
	s := w.splitter(w.client(t, &http.Client{Transport: lt}), "run")
	var once sync.Once
	lt.before = func(action string, form url.Values) {
		if action != "AttachInstances" || form.Get("AutoScalingGroupName") != zone {
			return
		}
		once.Do(func() {
			g, _ := w.emu.Group("cassandra")
			// cluster-autoscaler scales the split group up to its maximum.
			if err := w.cloud.UpdateGroupSize(ctx, "cassandra", asg.Sizes{Desired: &g.MaxSize}); err != nil {
				t.Error(err)
			}
		})
	}
	for pass := range 40 {
		if _, err := s.Pass(ctx, "cassandra"); err != nil {
			t.Logf("pass %d: %v", pass, err)
		}
		w.clock.Step(30 * time.Second)
	}
	w.checkNoneLoose(t, fmt.Sprintf("after %d passes", 40))
}
