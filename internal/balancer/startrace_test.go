package balancer

import (
	"context"
	"net/http"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestHeldNodeAnnotatedWhileGroupsCannotBeRead: cluster-autoscaler's
// scale-down reads only the node's scale-down-disabled annotation, and it
// keeps running while Auto Scaling throttles DescribeAutoScalingGroups (its
// groups are cached). A loop that cannot read the groups still marks every
// node that holds a bound local volume, from the apiserver alone, and
// reports the error; what needs AWS (scale-in protection, the hook) waits
// for the next loop. Before, the loop returned at the failed read and the
// held node stayed unmarked: the e2e test (test/integration/autoscaler, "CA
// starts first, AWS throttles az-balancer's start") saw CA taint it for
// deletion.
func TestHeldNodeAnnotatedWhileGroupsCannotBeRead(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.seedCassandra(localPV("pv", "cass-a-0", v1.VolumeBound))
	// Beyond the SDK's retries: the whole loop's read fails.
	f.emu.Inject(awstest.Fault{Service: "autoscaling", Action: "DescribeAutoScalingGroups", Code: "Throttling", Status: http.StatusBadRequest, Times: 50})
	if err := f.b.Reconcile(ctx); err == nil {
		t.Fatal("Reconcile succeeded with DescribeAutoScalingGroups throttled")
	}
	a := annotations(t, f, "cass-a-0")
	if a[AnnotationScaleDownDisabled] != "true" || a[AnnotationProtectedBy] != Source {
		t.Errorf("held node annotations %v, want %s=true owned by %s", a, AnnotationScaleDownDisabled, Source)
	}
	if a[AnnotationScaleInProtectedBy] != "" {
		t.Errorf("held node records scale-in protection %q that no AWS call set", a[AnnotationScaleInProtectedBy])
	}
	for _, n := range []string{"cass-a-1", "cass-b-0"} {
		if got := annotations(t, f, n)[AnnotationScaleDownDisabled]; got != "" {
			t.Errorf("node %s without a volume annotated %q", n, got)
		}
	}
	if calls := f.emu.MutatingCalls(); len(calls) != 0 {
		t.Errorf("AWS writes without the groups read: %v", calls)
	}

	// The next loop does the rest.
	f.emu.Reset()
	if err := f.b.Reconcile(ctx); err != nil {
		t.Fatalf("second Reconcile: %v", err)
	}
	if n := len(protected(f, "cassandra")); n != 1 {
		t.Errorf("%d protected instances, want 1", n)
	}
	if got := annotations(t, f, "cass-a-0")[AnnotationScaleInProtectedBy]; got != Source {
		t.Errorf("scale-in protection recorded as %q, want %s", got, Source)
	}
}
