//go:build e2e

package autoscaler

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/balancer"
	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// testStartRace: az-balancer runs beside cluster-autoscaler as a sidecar, so
// the two start together (a new pod, a rollout, a restart), and nothing
// orders them. Here they are stopped; a new group comes up with two empty
// nodes, one holding a bound local volume whose pod is gone, which neither
// has seen; then they start, together or CA first (az-balancer only once CA
// has found the held node unneeded, the latest a sidecar starts in
// practice). CA's scale-down runs: it removes the free node. The held node
// must never be tainted for deletion, deleted, or its instance terminated,
// over the whole time and ten CA loops beyond CA's scale-down-unneeded-time
// (5 s in caFlags).
//
// throttled > 0 throttles the next throttled DescribeAutoScalingGroups calls
// as az-balancer starts (AWS: "Throttling", HTTP 400, when a request rate
// quota of the account is exceeded; Amazon EC2 Auto Scaling API reference,
// Common Errors): whoever calls it, CA or az-balancer, gets the error. The
// node holding a local volume must be kept from CA all the same.
func testStartRace(t *testing.T, w *world, group string, caFirst bool, throttled int) {
	w.ca.stop()
	w.stopBalancer()
	w.emu.CreateGroup(awstest.GroupSpec{Name: group, Zones: zones[:1], MaxSize: 3, InstanceType: "i3.xlarge",
		Instances: map[string]int{zones[0]: 2}, Tags: caTags(map[string]string{tagLabel + "pool": group})})
	nodes := w.groupNodes(group)
	if len(nodes) != 2 {
		t.Fatalf("%s has nodes %v, want 2", group, nodes)
	}
	held, free := nodes[0], nodes[1]
	w.waitFor("the nodes of "+group+" ready", 30*time.Second, func() (bool, error) {
		for _, name := range nodes {
			n, err := w.cs.CoreV1().Nodes().Get(w.ctx, name, metav1.GetOptions{})
			if err != nil || starting(n) || n.Spec.ProviderID == "" {
				return false, nil
			}
		}
		return true, nil
	})
	testenv.BindLocalVolume(w.ctx, t, w.cs, w.ns, "data-"+group, "local-pv-"+held, held)
	calls := len(w.emu.Calls())

	if caFirst {
		w.ca = startCA(t, w.bin, w.testCtx, w.emu.URL)
		w.waitLog("CA finding the held node unneeded", 60*time.Second, held+" is unneeded since")
		if throttled > 0 {
			w.emu.Inject(awstest.Fault{Service: "autoscaling", Action: "DescribeAutoScalingGroups", Code: "Throttling", Status: http.StatusBadRequest, Times: throttled})
		}
		w.startBalancer()
	} else {
		w.startBalancer()
		w.ca = startCA(t, w.bin, w.testCtx, w.emu.URL)
	}

	// throttledSoFar counts the throttled reads since the scenario began.
	throttledSoFar := func() int {
		n := 0
		for _, c := range w.emu.Calls()[calls:] {
			if c.Action == "DescribeAutoScalingGroups" && c.Code == "Throttling" {
				n++
			}
		}
		return n
	}
	annotatedAt := -1 // throttledSoFar when the annotation was first seen

	// Checked at every poll from now on: the held node is still there,
	// untainted by CA, its instance in service.
	intact := func() error {
		n, err := w.cs.CoreV1().Nodes().Get(w.ctx, held, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("the held node %s: %v", held, err)
		}
		if annotatedAt < 0 && n.Annotations[balancer.AnnotationScaleDownDisabled] == "true" {
			annotatedAt = throttledSoFar()
		}
		for _, taint := range n.Spec.Taints {
			if taint.Key == "ToBeDeletedByClusterAutoscaler" {
				return fmt.Errorf("CA tainted the held node %s for deletion: %v", held, n.Spec.Taints)
			}
		}
		if i, _ := w.emu.Instance(held); i.LifecycleState != awstest.InService {
			return fmt.Errorf("the held instance %s is %s", held, i.LifecycleState)
		}
		return nil
	}
	w.waitFor("CA to remove the free node of "+group, 90*time.Second, func() (bool, error) {
		if err := intact(); err != nil {
			return false, err
		}
		i, _ := w.emu.Instance(free)
		_, err := w.cs.CoreV1().Nodes().Get(w.ctx, free, metav1.GetOptions{})
		return i.EC2State == "terminated" && err != nil, nil
	})
	loops := strings.Count(w.ca.Log(), "Starting main loop")
	w.waitFor("ten more CA loops", 60*time.Second, func() (bool, error) {
		if err := intact(); err != nil {
			return false, err
		}
		return strings.Count(w.ca.Log(), "Starting main loop") >= loops+10, nil
	})

	if throttled > 0 {
		// The node was marked while az-balancer could not read the groups.
		if got := throttledSoFar(); got != throttled || annotatedAt < 0 || annotatedAt >= throttled {
			t.Errorf("%d of %d DescribeAutoScalingGroups calls throttled, %d of them before the held node was annotated; want all, and the annotation while they lasted",
				got, throttled, annotatedAt)
		}
	}
	for _, c := range w.emu.Calls()[calls:] {
		if c.Action == "TerminateInstanceInAutoScalingGroup" && c.Params.Get("InstanceId") == held {
			t.Errorf("CA asked to terminate %s, which holds a bound local volume", held)
		}
	}
	if !strings.Contains(w.ca.Log(), "Skipping "+held+" from delete consideration - the node is marked as no scale down") {
		t.Errorf("CA never said it skipped %s for az-balancer's annotation", held)
	}
	n, err := w.cs.CoreV1().Nodes().Get(w.ctx, held, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Annotations[balancer.AnnotationScaleDownDisabled] != "true" {
		t.Errorf("held node annotations %v, want %s=true", n.Annotations, balancer.AnnotationScaleDownDisabled)
	}
	if i, _ := w.emu.Instance(held); !i.ProtectedFromScaleIn {
		t.Errorf("held instance %+v, want protected from scale-in", i)
	}
	if g, _ := w.emu.Group(group); g.Desired != 1 || !slices.ContainsFunc(w.emu.GroupInstances(group), func(i awstest.Instance) bool { return i.ID == held }) {
		t.Errorf("%s: desired %d, instances %v; want the held one alone", group, g.Desired, w.emu.GroupInstances(group))
	}
}
