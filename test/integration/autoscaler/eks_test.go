//go:build e2e

package autoscaler

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// An EKS managed node group at size zero: its ASG has only EKS's tags
// (eks:cluster-name, eks:nodegroup-name), and its Kubernetes labels, taint
// and capacity type are known only to EKS DescribeNodegroup (EKS API
// Reference). The nodes it launches carry them (EKS user guide, "Managed
// node groups": the node labels and taints of the node group, and
// eks.amazonaws.com/capacityType).
const (
	eksGroup     = "eks-ml-7ac2b1d4"
	eksNodegroup = "ml"
)

var eksNodegroupSpec = awstest.Nodegroup{
	Cluster: cluster, Name: eksNodegroup, CapacityType: "SPOT", AMIType: "AL2023_x86_64_STANDARD", Version: "1.37", ASG: eksGroup,
	Labels: map[string]string{"team": "ml"},
	Taints: []awstest.NodegroupTaint{{Key: "dedicated", Value: func() *string { s := "ml"; return &s }(), Effect: "NO_SCHEDULE"}},
}

// eksNodeLabels does for the managed group's nodes what EKS's bootstrap does
// through kubelet (--node-labels, --register-with-taints): the node group's
// labels, eks.amazonaws.com/nodegroup and capacityType, and its taint.
func (w *world) eksNodeLabels(ctx context.Context) {
	done := map[string]bool{}
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		for _, i := range w.emu.GroupInstances(eksGroup) {
			if done[i.ID] {
				continue
			}
			n, err := w.cs.CoreV1().Nodes().Get(ctx, i.ID, metav1.GetOptions{})
			if err != nil {
				continue // not registered yet
			}
			n = n.DeepCopy()
			for k, v := range eksNodegroupSpec.Labels {
				n.Labels[k] = v
			}
			n.Labels["eks.amazonaws.com/nodegroup"] = eksNodegroup
			n.Labels["eks.amazonaws.com/capacityType"] = eksNodegroupSpec.CapacityType
			n.Spec.Taints = append(n.Spec.Taints, v1.Taint{Key: "dedicated", Value: "ml", Effect: v1.TaintEffectNoSchedule})
			if _, err := w.cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err == nil {
				done[i.ID] = true
			}
		}
	}, 200*time.Millisecond)
}

// TestEKSManagedNodeGroup: with the real cluster-autoscaler 1.36.1 (its EKS
// endpoint pointed at the emulator by a cloud-config ServiceOverride,
// Service "eks"), a pod that selects the managed node group's EKS labels and
// tolerates its EKS taint is not parked by Ballast, CA scales the group from
// zero (its template has DescribeNodegroup's labels and taints) and the pod
// binds there. A pod selecting a label no group has is parked, and CA does
// not scale up for it.
func TestEKSManagedNodeGroup(t *testing.T) {
	bin := caBinary(t)
	eksGroups := []awstest.GroupSpec{
		// CA needs a node to run on; nothing else lands here.
		{Name: "system-a", Zones: zones[:1], MinSize: 1, MaxSize: 1, InstanceType: "m5.large", Instances: map[string]int{zones[0]: 1},
			Tags: map[string]string{tagLabel + "role": "system", tagTaint + "CriticalAddonsOnly": "true:NoSchedule"}},
		{Name: eksGroup, Zones: zones[:1], MaxSize: 3, InstanceType: "m5.xlarge",
			Tags: map[string]string{"eks:cluster-name": cluster, "eks:nodegroup-name": eksNodegroup, "kubernetes.io/cluster/" + cluster: "owned"}},
	}
	w := newWorld(t, bin, eksGroups, func(w *world) {
		w.emu.AddNodegroup(eksNodegroupSpec)
		go w.eksNodeLabels(w.ctx)
	}, nil)

	lost := w.pod(t, "eks-lost", map[string]string{"team": "nlp"}, tolerate("dedicated", "ml"))
	testenv.WaitPod(w.ctx, t, w.cs, lost, 30*time.Second, "parked by Ballast", testenv.ParkedByBallast)

	trainer := w.pod(t, "eks-trainer", map[string]string{"team": "ml", "eks.amazonaws.com/capacityType": "SPOT"}, tolerate("dedicated", "ml"))
	parked := false
	var p *v1.Pod
	w.waitFor("the trainer bound to a node CA added", 120*time.Second, func() (bool, error) {
		got, err := w.cs.CoreV1().Pods(w.ns).Get(w.ctx, trainer.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		parked = parked || testenv.ParkedByBallast(got)
		p = got
		return testenv.Bound(got), nil
	})
	if parked {
		t.Errorf("Ballast parked %s although CA scaled %s up for it", trainer.Name, eksGroup)
	}
	if i, ok := w.emu.Instance(p.Spec.NodeName); !ok || i.Group != eksGroup {
		t.Errorf("%s bound to %s (instance %+v), want a node of %s", trainer.Name, p.Spec.NodeName, i, eksGroup)
	}
	if ev := w.caEvents(trainer.Name)["TriggeredScaleUp"]; !strings.Contains(ev, eksGroup) {
		t.Errorf("CA's TriggeredScaleUp event on %s: %q, want %s named", trainer.Name, ev, eksGroup)
	}
	// The ASG's tags do not say team=ml: CA's scale-up for the trainer shows
	// that its template took the label from DescribeNodegroup (the emulator,
	// through the cloud-config's Service "eks" override).
	if got, err := w.cs.CoreV1().Pods(w.ns).Get(w.ctx, lost.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("the lost pod: %v", err)
	} else if testenv.Bound(got) || !testenv.ParkedByBallast(got) {
		t.Errorf("the lost pod after the scale-up: %s, want still parked", testenv.Describe(got))
	}
}
