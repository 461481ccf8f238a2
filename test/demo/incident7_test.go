package demo

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	testutils "k8s.io/kubernetes/test/integration/util"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/balancer"
	"github.com/ballast-k8s/ballast/internal/shapes"
	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// Incident 7 in small: one Auto Scaling group over three zones, zone c short
// of capacity while the group filled a and b, one local PV bound per node.
const perZone = 6

var zones = []string{"us-east-1a", "us-east-1b", "us-east-1c"}

type side7 struct {
	terminated, terminatedWithPV, orphanedPVs, hopelessPods int
	example                                                 string
	protected, annotated                                    int
}

type run7 struct {
	instances        int
	without, withBal side7
}

func (r run7) report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nIncident 7: %d Cassandra nodes in one Auto Scaling group over 3 zones, a local PV bound on each;\nzone c ran short while the group filled a and b, then recovered and AWS rebalanced.\n\n", r.instances)
	fmt.Fprintf(&b, "  %-48s %18s %12s\n", "", "without", "az-balancer")
	fmt.Fprintf(&b, "  %-48s %18d %12d\n", "instances terminated by AZRebalance", r.without.terminated, r.withBal.terminated)
	fmt.Fprintf(&b, "  %-48s %18d %12d\n", "  of which held a bound local PV", r.without.terminatedWithPV, r.withBal.terminatedWithPV)
	fmt.Fprintf(&b, "  %-48s %18d %12d\n", "PVs left bound to nodes that no longer exist", r.without.orphanedPVs, r.withBal.orphanedPVs)
	fmt.Fprintf(&b, "  %-48s %18d %12d\n", "Cassandra pods that can never run again", r.without.hopelessPods, r.withBal.hopelessPods)
	fmt.Fprintf(&b, "  %-48s %18d %12d\n", "instances protected from scale-in", r.without.protected, r.withBal.protected)
	fmt.Fprintf(&b, "  %-48s %18d %12d\n", "nodes annotated scale-down-disabled", r.without.annotated, r.withBal.annotated)
	if r.without.example != "" {
		fmt.Fprintf(&b, "\n  What the scheduler plugin tells such a pod:\n    %s\n", r.without.example)
	}
	return b.String()
}

func (r run7) check(t *testing.T) {
	if r.without.terminatedWithPV == 0 || r.without.hopelessPods == 0 {
		t.Errorf("the demo did not reproduce incident 7: %+v", r.without)
	}
	if r.withBal.terminated != 0 || r.withBal.orphanedPVs != 0 {
		t.Errorf("with az-balancer, AZRebalance still terminated %d instances (%d orphaned PVs)", r.withBal.terminated, r.withBal.orphanedPVs)
	}
	if r.withBal.protected != r.instances || r.withBal.annotated != r.instances {
		t.Errorf("with az-balancer, %d instances protected and %d nodes annotated, want %d", r.withBal.protected, r.withBal.annotated, r.instances)
	}
}

func replayIncident7(t *testing.T, server *testutils.TestContext) run7 {
	r := run7{instances: 2 * perZone}
	r.without = replaySide(t, server, "without", false)
	r.withBal = replaySide(t, server, "with", true)
	return r
}

func replaySide(t *testing.T, server *testutils.TestContext, name string, withBalancer bool) side7 {
	testCtx := testutils.WithNewNamespace(t, server, "cassandra-"+name)
	ctx, cs, ns := testCtx.Ctx, testCtx.ClientSet, testCtx.NS.Name
	clk := clocktesting.NewFakeClock(time.Now())
	emu := awstest.NewServer(clk)
	defer emu.Close()
	group := "cassandra-" + name
	ids := emu.CreateGroup(awstest.GroupSpec{Name: group, Zones: zones, MaxSize: 3 * perZone, InstanceType: "i3.xlarge",
		Tags:      map[string]string{"k8s.io/cluster-autoscaler/enabled": "true", "k8s.io/cluster-autoscaler/" + group: "owned"},
		Instances: map[string]int{zones[0]: perZone, zones[1]: perZone}})
	nodeOf := map[string]string{}
	var nodeNames []string
	for _, z := range zones {
		for i, id := range ids[z] {
			n := fmt.Sprintf("%s-%s-%d", group, z[len(z)-1:], i)
			nodeOf[id] = n
			nodeNames = append(nodeNames, n)
			createCassandraNode(ctx, t, cs, n, z, id)
			testenv.BindLocalVolume(ctx, t, cs, ns, fmt.Sprintf("data-%s", n), "pv-"+n, n)
		}
	}
	defer func() {
		for _, n := range nodeNames {
			_ = cs.CoreV1().Nodes().Delete(context.Background(), n, metav1.DeleteOptions{})
			_ = cs.CoreV1().PersistentVolumes().Delete(context.Background(), "pv-"+n, metav1.DeleteOptions{})
		}
	}()

	if withBalancer {
		cloud, err := asg.New(ctx, emu.ClientOptions())
		if err != nil {
			t.Fatal(err)
		}
		b := balancer.New(cs, cloud, record.NewFakeRecorder(1000), clk, balancer.Options{
			Selector: asg.AutoDiscovery(group), ConfigMapNamespace: ns, ConfigMapName: "ballast-node-groups", HeartbeatTimeout: 5 * time.Minute}, nil)
		if err := b.Reconcile(ctx); err != nil {
			t.Fatalf("az-balancer loop: %v", err)
		}
	}

	// Zone c recovers; AWS rebalances during the night.
	var s side7
	terminated := emu.AZRebalance()
	clk.Step(2 * time.Hour)
	emu.Expire()
	for _, id := range terminated {
		if inst, ok := emu.Instance(id); ok && inst.LifecycleState != "Terminated" {
			continue // held by the hook
		}
		s.terminated++
		s.terminatedWithPV++ // every node here holds a bound local PV
		// The cloud node controller deletes the node of a terminated instance.
		_ = cs.CoreV1().Nodes().Delete(ctx, nodeOf[id], metav1.DeleteOptions{})
	}

	// What the cluster looks like now: PVs bound to nodes that are gone, and
	// what the scheduler plugin says of the pods that use them.
	nodes, _ := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	store := shapes.NewStore(&shapes.Options{IdentityLabels: sets.New(v1.LabelHostname)}, false)
	live := sets.New[string]()
	for i := range nodes.Items {
		store.UpsertNode(&nodes.Items[i])
		live.Insert(nodes.Items[i].Name)
	}
	for _, n := range nodeNames {
		pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, "pv-"+n, metav1.GetOptions{})
		if err != nil {
			continue
		}
		if !live.Has(n) {
			s.orphanedPVs++
		}
		p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cassandra-" + n}}
		v := store.Evaluate(shapes.NewRequirements(p, []shapes.BoundVolume{{Claim: pv.Spec.ClaimRef.Name, PV: pv}}, store.Options()))
		if v.Hopeless {
			s.hopelessPods++
			s.example = v.Message
		}
		node, err := cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err == nil && node.Annotations["cluster-autoscaler.kubernetes.io/scale-down-disabled"] == "true" {
			s.annotated++
		}
	}
	for _, inst := range emu.GroupInstances(group) {
		if inst.ProtectedFromScaleIn {
			s.protected++
		}
	}
	return s
}

func createCassandraNode(ctx context.Context, t *testing.T, cs kubernetes.Interface, name, zone, instance string) {
	n := testenv.Node(name, map[string]string{v1.LabelTopologyZone: zone, "pool": "cassandra"}, nil)
	n.Spec.ProviderID = fmt.Sprintf("aws:///%s/%s", zone, instance)
	if _, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
