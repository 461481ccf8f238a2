package balancer

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ballast-k8s/ballast/internal/awstest"
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
