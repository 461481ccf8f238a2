package balancer

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/shapes"
)

// launchedNode is the Node an instance of a group becomes, label by label as
// the components on the way write it:
//   - kubelet (pkg/kubelet/kubelet_node_status.go, initialNode): hostname,
//     kubernetes.io/os|arch and beta.kubernetes.io/os|arch, the --node-labels
//     (here the labels the group's node-template tags announce), and the
//     --register-with-taints;
//   - the cloud node controller (k8s.io/cloud-provider controllers/node):
//     node.kubernetes.io/instance-type, topology.kubernetes.io/zone|region and
//     their beta twins; cloud-provider-aws adds topology.k8s.aws/zone-id;
//   - the EBS CSI node plugin: its topology key topology.ebs.csi.aws.com/zone,
//     which kubelet copies onto the node when the driver registers.
func launchedNode(name, zone, zoneID string, it *asg.InstanceType, nodeLabels map[string]string, taints []v1.Taint) *v1.Node {
	region := zone[:len(zone)-1]
	l := map[string]string{
		v1.LabelHostname: name, v1.LabelOSStable: "linux", v1.LabelArchStable: it.KubeArch(),
		"beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": it.KubeArch(),
		v1.LabelInstanceTypeStable: it.Name, v1.LabelInstanceType: it.Name,
		v1.LabelTopologyZone: zone, v1.LabelFailureDomainBetaZone: zone,
		v1.LabelTopologyRegion: region, v1.LabelFailureDomainBetaRegion: region,
		"topology.k8s.aws/zone-id":      zoneID,
		"topology.ebs.csi.aws.com/zone": zone,
	}
	for k, v := range nodeLabels {
		l[k] = v
	}
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}, Spec: v1.NodeSpec{Taints: taints}}
}

// caTemplateLabels are the labels cluster-autoscaler's AWS template carries
// (cloudprovider/aws/README.md: the labels it derives from the instance type
// and zone, plus the node-template label tags), after its template
// sanitizer copied the stable labels to their deprecated twins.
var caTemplateLabels = []string{
	v1.LabelArchStable, v1.LabelOSStable, v1.LabelInstanceTypeStable, v1.LabelTopologyRegion, v1.LabelTopologyZone,
	"topology.ebs.csi.aws.com/zone", v1.LabelInstanceType, v1.LabelFailureDomainBetaRegion, v1.LabelFailureDomainBetaZone,
}

// TestTemplateIsTheLaunchedNode: a group's template has every label the node
// the group launches has (but its hostname), and the taints that node keeps
// once initialized: cluster-autoscaler's template rules drop the startup,
// status and ignore taints (its FAQ, "How does Cluster Autoscaler treat nodes
// with status/startup/ignore taints?"); a static predicate cannot tell the two
// apart.
func TestTemplateIsTheLaunchedNode(t *testing.T) {
	it := &asg.InstanceType{Name: "r6g.xlarge", VCPU: 4, MemoryMiB: 32768, Architectures: []string{"arm64"}}
	dedicated := v1.Taint{Key: "dedicated", Value: "db", Effect: v1.TaintEffectNoSchedule}
	g := &asg.Group{Name: "db-b", Zones: []string{"us-east-1b"}, MaxSize: 5, Tags: map[string]string{
		tagLabelPrefix + "pool":      "db",
		tagTaintPrefix + "dedicated": "db:NoSchedule",
		tagTaintPrefix + "startup-taint.cluster-autoscaler.kubernetes.io/cni-not-ready": "true:NoSchedule",
		tagTaintPrefix + "ignore-taint.cluster-autoscaler.kubernetes.io/driver":         "true:NoExecute",
		tagTaintPrefix + "status-taint.cluster-autoscaler.kubernetes.io/draining":       "true:NoSchedule",
	}}
	// Other nodes of the cluster tell the zone's id (the mapping is per account).
	ids := zoneIDs([]*v1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "other", Labels: map[string]string{v1.LabelTopologyZone: "us-east-1b", "topology.k8s.aws/zone-id": "use1-az2"}}},
	})
	w := &warnings{}
	ng := template(g, it, ids, w)
	if len(w.items) > 0 {
		t.Fatalf("unexpected warnings: %+v", w.items)
	}
	tmpl := ng.TemplateNode()
	node := launchedNode("ip-10-0-1-7.ec2.internal", "us-east-1b", "use1-az2", it, map[string]string{"pool": "db"}, []v1.Taint{dedicated})
	node.Status.Allocatable = tmpl.Status.Allocatable // kubelet's, which the template estimates

	withoutHostname := func(l map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range l {
			if k != v1.LabelHostname {
				out[k] = v
			}
		}
		return out
	}
	if diff := cmp.Diff(withoutHostname(node.Labels), withoutHostname(tmpl.Labels)); diff != "" {
		t.Errorf("template labels differ from the launched node's (-node, +template):\n%s", diff)
	}
	if diff := cmp.Diff([]v1.Taint{dedicated}, tmpl.Spec.Taints); diff != "" {
		t.Errorf("template taints (-want, +got):\n%s", diff)
	}
	for _, k := range caTemplateLabels {
		if _, ok := tmpl.Labels[k]; !ok {
			t.Errorf("template lacks %s, which cluster-autoscaler's template carries", k)
		}
	}
	for _, taint := range tmpl.Spec.Taints {
		if strippedTaint(taint.Key) {
			t.Errorf("template keeps taint %s, which cluster-autoscaler strips from templates", taint.Key)
		}
	}

	// The cases of the issue, through the static predicates: a pod with the
	// legacy os selector and a StatefulSet pod whose EBS CSI volume sits in
	// the group's zone pass the template exactly as they pass the node.
	ebsPV := shapes.BoundVolume{Claim: "data-db-0", PV: &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pvc-1234"},
		Spec: v1.PersistentVolumeSpec{
			Capacity:               v1.ResourceList{v1.ResourceStorage: resource.MustParse("100Gi")},
			PersistentVolumeSource: v1.PersistentVolumeSource{CSI: &v1.CSIPersistentVolumeSource{Driver: "ebs.csi.aws.com", VolumeHandle: "vol-1"}},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: "topology.ebs.csi.aws.com/zone", Operator: v1.NodeSelectorOpIn, Values: []string{"us-east-1b"}}}}}}},
		},
	}}
	tolerating := []v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "db", Effect: v1.TaintEffectNoSchedule}}
	opts := &shapes.Options{IdentityLabels: sets.New(v1.LabelHostname)}
	for name, pod := range map[string]*v1.Pod{
		"legacy os selector": {Spec: v1.PodSpec{NodeSelector: map[string]string{"beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "arm64"}, Tolerations: tolerating}},
		"EBS CSI volume":     {Spec: v1.PodSpec{Tolerations: tolerating}},
		"zone id selector":   {Spec: v1.PodSpec{NodeSelector: map[string]string{"topology.k8s.aws/zone-id": "use1-az2"}, Tolerations: tolerating}},
	} {
		var vols []shapes.BoundVolume
		if name == "EBS CSI volume" {
			vols = []shapes.BoundVolume{ebsPV}
		}
		req := shapes.NewRequirements(pod, vols, opts)
		nodeFits, tmplFits := req.Check(node) == nil, req.Check(tmpl) == nil
		if !nodeFits || !tmplFits {
			t.Errorf("%s: fits the launched node %v, the template %v; want both", name, nodeFits, tmplFits)
		}
	}
}

// TestTemplateTaintsCARules: every prefix cluster-autoscaler documents is
// stripped, other taints are kept as tagged.
func TestTemplateTaintsCARules(t *testing.T) {
	cases := map[string]bool{
		"startup-taint.cluster-autoscaler.kubernetes.io/x":           true,
		"status-taint.cluster-autoscaler.kubernetes.io/x":            true,
		"ignore-taint.cluster-autoscaler.kubernetes.io/x":            true,
		"ToBeDeletedByClusterAutoscaler":                             true,
		v1.TaintNodeNotReady:                                         true,
		"dedicated":                                                  false,
		"example.com/startup-taint.cluster-autoscaler.kubernetes.io": false,
	}
	for key, stripped := range cases {
		g := &asg.Group{Name: "g", Zones: []string{"us-east-1a"}, MaxSize: 1, Tags: map[string]string{tagTaintPrefix + key: "v:NoSchedule"}}
		ng := template(g, nil, nil, &warnings{})
		if got := len(ng.Taints) == 0; got != stripped {
			t.Errorf("taint %s: stripped %v, want %v (taints %v)", key, got, stripped, ng.Taints)
		}
	}
}
