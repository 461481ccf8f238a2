package shapes

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/dynamic-resource-allocation/deviceclass/extendedresourcecache"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// TestDeviceClassesAgainstSchedulerCache feeds random DeviceClass event
// sequences (adds, updates that change or drop the extended resource name,
// deletes; clashing names, equal and different creation times) to the
// scheduler's own extended-resource cache (the oracle: NodeResourcesFit asks
// it whether to hand a resource to DRA) and to DeviceClasses, in the order an
// informer delivers them, and compares what each maps after every event.
func TestDeviceClassesAgainstSchedulerCache(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	classNames := []string{"a", "b", "c", "d"}
	resNames := []string{"example.com/gpu", "example.com/fpga", "example.com/nic"}
	var candidates []v1.ResourceName
	for _, c := range classNames {
		candidates = append(candidates, ImplicitExtendedResourceName(c))
	}
	for _, r := range resNames {
		candidates = append(candidates, v1.ResourceName(r))
	}
	base := time.Unix(1700000000, 0)
	for round := range 300 {
		oracle := extendedresourcecache.NewExtendedResourceCache(klog.Background())
		ours := NewDeviceClasses()
		live := map[string]*resourceapi.DeviceClass{}
		var trace []string
		for step := range 40 {
			name := classNames[rng.IntN(len(classNames))]
			old, exists := live[name]
			var ev string
			switch {
			case exists && rng.IntN(4) == 0:
				oracle.OnDelete(old)
				ours.Delete(old)
				delete(live, name)
				ev = "delete " + name
			default:
				dc := &resourceapi.DeviceClass{ObjectMeta: metav1.ObjectMeta{Name: name}}
				if exists {
					dc.CreationTimestamp = old.CreationTimestamp
				} else {
					// Few distinct times: equal timestamps exercise the name tie-break.
					dc.CreationTimestamp = metav1.NewTime(base.Add(time.Duration(rng.IntN(3)) * time.Second))
				}
				if rng.IntN(4) != 0 {
					dc.Spec.ExtendedResourceName = ptr.To(resNames[rng.IntN(len(resNames))])
				}
				if exists {
					oracle.OnUpdate(old, dc)
					ev = "update " + name
				} else {
					oracle.OnAdd(dc, false)
					ev = "add " + name
				}
				ours.Upsert(dc)
				live[name] = dc
				if dc.Spec.ExtendedResourceName != nil {
					ev += fmt.Sprintf(" %s@%d", *dc.Spec.ExtendedResourceName, dc.CreationTimestamp.Unix()-base.Unix())
				}
			}
			trace = append(trace, ev)
			for _, n := range candidates {
				want := oracle.GetDeviceClass(n) != nil
				if got := ours.Maps(n); got != want {
					t.Fatalf("round %d step %d: %s: Maps=%v, the scheduler's cache %v\nevents: %v", round, step, n, got, want, trace)
				}
			}
		}
	}
}
