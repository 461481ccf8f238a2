package balancer

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestReview10eConfigMapOverOneMiBAtNoVariants: encodeData trims variants
// down to none and then returns the data whatever its size
// ("size <= maxConfigMapBytes || limit == 0"). The widened templates and the
// remembered summaries are not bounded by the trimming: 14 groups whose
// nodes carry 128 legal labels of a long prefixed key and a 63-character
// value (each remembered, maxRememberedLabels) make the list plus the memory
// larger than the API server takes ("The data stored in a ConfigMap cannot
// exceed 1 MiB", Kubernetes documentation, ConfigMaps; apiserver
// ValidateConfigMap: "Too long"). The update is then refused on every loop:
// the list goes stale (fail-open, nothing parked) and the memory is never
// saved. The fake clientset does not enforce the limit, so the test measures
// what would be sent.
func TestReview10eConfigMapOverOneMiBAtNoVariants(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const groups = 14
	prefix := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + ".example.com/"
	for g := range groups {
		name := fmt.Sprintf("batch%02d", g)
		ids := f.emu.CreateGroup(awstest.GroupSpec{Name: name, Zones: []string{"us-east-1a"}, MaxSize: 3, InstanceType: "m5.xlarge",
			Tags: caTags(nil), Instances: map[string]int{"us-east-1a": 1}})["us-east-1a"]
		n := batchNode(f, name+"-0", ids[0])
		for l := 0; len(n.Labels) < maxRememberedLabels; l++ {
			n.Labels[fmt.Sprintf("%sl-%03d-%s", prefix, l, strings.Repeat("k", 50))] = fmt.Sprintf("%s-%s", name, strings.Repeat("v", 55))
		}
		if _, err := f.kube.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	reconcile(t, f)
	cm, err := f.kube.CoreV1().ConfigMaps(nodegroups.DefaultNamespace).Get(ctx, nodegroups.DefaultName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	size := 0
	for k, v := range cm.Data {
		size += len(k) + len(v)
	}
	if size > 1<<20 {
		t.Fatalf("ConfigMap data is %d bytes (list %d, memory %d), more than the API server takes (1 MiB): the update is refused",
			size, len(cm.Data[nodegroups.DataKey]), len(cm.Data[lastNodesKey]))
	}
}
