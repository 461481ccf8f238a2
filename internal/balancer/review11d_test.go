package balancer

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

// TestReview11dEBSVolumeOnAnOutpostIsNotNodeLocal (review 11d): the AWS EBS
// CSI driver on an AWS Outpost reports, besides its zone keys, the
// topology keys topology.ebs.csi.aws.com/outpost-id, /account-id,
// /partition and /region (aws-ebs-csi-driver, pkg/driver/node.go
// NodeGetInfo: "segments[AwsOutpostIDKey] = outpostArn.Resource" ...), and
// CreateVolume gives every EBS volume created on the Outpost the same
// segments (pkg/driver/controller.go newCreateVolumeResponse), so the
// external-provisioner writes a PV whose one node-affinity term has
// "topology.ebs.csi.aws.com/outpost-id In [op-...]"; docs/outposts.md of the
// driver tells users to select Outposts by that key. kubelet labels the node
// with the segments and lists the keys in its CSINode for ebs.csi.aws.com.
// An Outposts server commonly runs one node of the cluster: then exactly one
// node carries outpost-id=op-..., the key has neither "zone" nor "region",
// and the CSINode lists it, so nodeTopology.pinned takes this network EBS
// volume for node-local storage: the node is annotated scale-down-disabled,
// protected from scale-in, and its termination is held (up to 48 hours with
// the default heartbeat timeout) although its data lives in EBS and would
// follow the pod. Once recorded, the volume stays "node-local" even with its
// node gone (the recorded path skips the CSINode check). Root cause:
// internal/balancer/topology.go nodeTopology.pinned: "not a zone or region
// key, one node carries it" does not make a key a per-node key; a key naming
// a location (outpost, rack, partition, account) that happens to have one
// node is as network-backed as a zone. Suggested fix: pin by topology only
// for keys whose value names the node (the value equals the node's name,
// hostname or the CSINode's NodeID for the driver, as TopoLVM's and OpenEBS
// LVM's do), or for an explicit allow-list of drivers/keys given by a flag.
func TestReview11dEBSVolumeOnAnOutpostIsNotNodeLocal(t *testing.T) {
	const (
		driver  = "ebs.csi.aws.com"
		outpost = "op-0123456789abcdef0"
	)
	segments := map[string]string{
		v1.LabelTopologyZone:                  zones[0],
		"topology.ebs.csi.aws.com/zone":       zones[0],
		"topology.ebs.csi.aws.com/region":     "us-east-1",
		"topology.ebs.csi.aws.com/partition":  "aws",
		"topology.ebs.csi.aws.com/account-id": "123456789012",
		"topology.ebs.csi.aws.com/outpost-id": outpost,
	}
	w := newWorld(t, 2, nil)
	// cass-0 runs on the Outpost: kubelet labelled it with the driver's
	// segments and recorded the keys in its CSINode; cass-1 is in the region.
	n, err := w.kube.CoreV1().Nodes().Get(w.ctx, "cass-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k, v := range segments {
		n.Labels[k] = v
		keys = append(keys, k)
	}
	keys = append(keys, v1.LabelOSStable)
	if _, err := w.kube.CoreV1().Nodes().Update(w.ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, ks := range map[string][]string{"cass-0": keys, "cass-1": {v1.LabelTopologyZone, "topology.ebs.csi.aws.com/zone", v1.LabelOSStable}} {
		cn := &storagev1.CSINode{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{{Name: driver, NodeID: name, TopologyKeys: ks}}}}
		if _, err := w.kube.StorageV1().CSINodes().Create(w.ctx, cn, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// pv-0 is an EBS volume the driver created on the Outpost.
	pv := w.volume("pv-0")
	pv.Annotations = nil
	pv.Spec.PersistentVolumeSource = v1.PersistentVolumeSource{CSI: &v1.CSIPersistentVolumeSource{Driver: driver, VolumeHandle: "vol-0123456789abcdef0"}}
	var term v1.NodeSelectorTerm
	for _, k := range []string{"topology.ebs.csi.aws.com/account-id", "topology.ebs.csi.aws.com/outpost-id", "topology.ebs.csi.aws.com/partition", "topology.ebs.csi.aws.com/region", v1.LabelTopologyZone} {
		term.MatchExpressions = append(term.MatchExpressions, v1.NodeSelectorRequirement{Key: k, Operator: v1.NodeSelectorOpIn, Values: []string{segments[k]}})
	}
	pv.Spec.NodeAffinity.Required.NodeSelectorTerms = []v1.NodeSelectorTerm{term}
	if _, err := w.kube.CoreV1().PersistentVolumes().Update(w.ctx, pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.reconcile()
	w.reconcile()
	n, err = w.kube.CoreV1().Nodes().Get(w.ctx, "cass-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Annotations[AnnotationScaleDownDisabled] == "true" {
		t.Errorf("node cass-0, whose only volume is an EBS volume on its Outpost (network storage), is annotated %s=true by the balancer", AnnotationScaleDownDisabled)
	}
	w.startTermination(w.ids[0])
	w.loopPastTimeout()
	if got := w.lifecycleState(w.ids[0]); got == awstest.TerminatingWait {
		t.Errorf("the termination of instance %s (cass-0, an EBS volume on its Outpost) is held (%s): it would wait up to 48 hours for storage that is not on the instance", w.ids[0], got)
	}
}

// TestReview11dSplitPutsTheOldHeartbeatTimeoutBack (review 11d): the split
// copies the split group's lifecycle hooks to its per-zone groups and puts
// any that differs back (internal/split/split.go steps, step 3:
// PutLifecycleHook when a zone group's hook is not exactly the old group's),
// while ensureHook puts the balancer's own hook with --lifecycle-heartbeat-
// timeout (30 min by default since review 11c #4) only on groups that hold
// a volume, and then leaves it alone for HookResync (30 min). A deployment
// upgraded (or given another --lifecycle-heartbeat-timeout) in the middle of
// a split, once the held instances have moved to their zone's group, keeps
// the old group's hook at its old timeout (300 s, the former default): it
// holds nothing, so ensureHook never updates it. Every split pass then puts
// 300 s back on the zone group that holds the volume, right after ensureHook
// set 1800 s, and it stays at 300 s until the next resync: for the rest of
// the split a termination held there gets AWS's global timeout of
// "172800 seconds (48 hours) or 100 times HeartbeatTimeout, whichever is
// smaller" (API_LifecycleHook, GlobalTimeout): 8.3 hours, not 48. Root
// cause: the split (steps, step 3) and ensureHook (protect.go) disagree
// about the balancer's own hook; suggested fix: the split copies every hook
// but HookName (or takes the balancer's settings for it), and ensureHook
// also updates the split group's hook.
func TestReview11dSplitPutsTheOldHeartbeatTimeoutBack(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t) // the old group's hook: HeartbeatTimeout 300 s
	a0 := w.IDs[zones[0]][0]
	kube := fake.NewClientset(node("cass-a-0", zones[0], a0), localPV("pv-a0", "cass-a-0", v1.VolumeBound))
	old := splitBalancer(w, kube, record.NewFakeRecorder(1000))
	zg := ZoneGroupName("cassandra", zones[0])
	moved := func() bool {
		i, _ := w.Emu.Instance(a0)
		return i.Group == zg && i.LifecycleState == "InService"
	}
	for loop := 0; !moved(); loop++ {
		if loop > 50 {
			t.Fatal("the instance of cass-a-0 never reached its zone's group")
		}
		_ = old.Reconcile(ctx)
		w.Clock.Step(30 * time.Second)
	}
	if g, _ := w.Emu.Group("cassandra"); g.Tags[split.TagState] == split.StateDone {
		t.Fatal("the split finished before the upgrade; the test needs it in progress")
	}
	// The upgrade: the default heartbeat timeout, 30 minutes.
	upgraded := splitBalancer(w, kube, record.NewFakeRecorder(1000), func(o *Options) { o.HeartbeatTimeout = 0 }) // New's default
	want := int32(DefaultHeartbeatTimeout.Seconds())
	var bad []string
	for loop := 0; loop < 10; loop++ {
		_ = upgraded.Reconcile(ctx)
		for _, h := range w.Emu.Hooks(zg) {
			if h.Name == HookName && h.HeartbeatTimeout != want {
				bad = append(bad, fmt.Sprintf("loop %d: %d s", loop, h.HeartbeatTimeout))
			}
		}
		w.Clock.Step(30 * time.Second)
	}
	if len(bad) > 0 {
		t.Errorf("the hook %s of %s, which holds the bound volume of cass-a-0, has another heartbeat timeout than the balancer's %d s after the upgrade (global timeout 100x it, under 48 h): %v", HookName, zg, want, bad)
	}
}

// TestReview11dRestartDuringAnotherHooksWaitFailsEveryLoop (review 11d): an
// instance in Terminating:Wait waits for every termination hook of its group
// (user guide, lifecycle-hooks: the instance stays in the wait state until
// each hook's action is completed or times out); a node-drain or
// log-shipping hook next to the balancer's is common, with a timeout of up
// to 7200 s, heartbeated by its owner for up to 48 hours. The balancer lets
// such an instance go (CompleteLifecycleAction for its own hook) and marks
// it in lifecycle.completed, in memory only. After a restart (a new leader,
// an upgrade, the liveness probe) the instance is still Terminating:Wait
// (the other hook) and holds nothing, so the loop completes its own hook
// again, which AWS refuses: "ValidationError: No active Lifecycle Action
// found with instance ID ..." (API_CompleteLifecycleAction). That error
// fails every loop for as long as the other hook waits: the loop-failing
// alerts fire, and after --unhealthy-after (10 min) /healthz fails and the
// kubelet restarts the balancer, which forgets again, for hours. Root cause:
// internal/balancer/protect.go lifecycleActions treats the refusal of a
// completion that is no longer needed as a failure. Suggested fix: on that
// ValidationError mark the instance completed (nothing of ours holds it), or
// ask DescribeLifecycleHooks/the instance's pending hooks first.
func TestReview11dRestartDuringAnotherHooksWaitFailsEveryLoop(t *testing.T) {
	w := newWorld(t, 2, nil)
	if err := w.b.cloud.PutLifecycleHook(w.ctx, asg.Hook{Group: "cassandra", Name: "node-drain", Transition: asg.TransitionTerminating,
		HeartbeatTimeout: 7200, DefaultResult: asg.ResultContinue}); err != nil {
		t.Fatal(err)
	}
	// cass-1's volume is gone: its instance holds nothing.
	if err := w.kube.CoreV1().PersistentVolumes().Delete(w.ctx, "pv-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.reconcile()
	w.startTermination(w.ids[1])
	w.reconcile() // lets it go: completes the balancer's hook
	if got := w.lifecycleState(w.ids[1]); got != awstest.TerminatingWait {
		t.Fatalf("instance %s is %s, want %s (the node-drain hook still waits)", w.ids[1], got, awstest.TerminatingWait)
	}
	w.restart()
	var errs []string
	for loop := range 3 {
		if err := w.b.Reconcile(w.ctx); err != nil {
			errs = append(errs, fmt.Sprintf("loop %d: %v", loop, requestIDs.ReplaceAllString(err.Error(), "")))
		}
		w.clock.Step(time.Minute)
	}
	if len(errs) > 0 {
		t.Errorf("after a restart, every loop fails while instance %s (released by the balancer before) waits on another hook: %v", w.ids[1], errs)
	}
}

var requestIDs = regexp.MustCompile(`RequestID: [^,]*, `)
