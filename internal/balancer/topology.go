package balancer

import (
	"context"
	"fmt"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// nodeTopology tells which CSI volumes are pinned to one node by their
// driver's own topology key (TopoLVM's topology.topolvm.io/node, OpenEBS
// LVM's openebs.io/nodename: the usual way to carve an instance store into
// volumes), as surely as by hostname.
//
// A term of a CSI volume's required node affinity pins it to node N when it
// has a requirement "K In [v]" with one value, and
//   - K is not a zone or region key (its name has neither "zone" nor
//     "region": topology.kubernetes.io/zone, topology.ebs.csi.aws.com/zone,
//     topology.k8s.aws/zone-id ... pin a network volume to a zone, which may
//     happen to have one node, and must never hold that node);
//   - N is the only node labelled K=v;
//   - K is one of the topology keys N's CSINode lists for the volume's driver
//     (kubelet labels the node with the driver's accessible topology), or the
//     volume already records an instance (AnnotationInstanceID, written only
//     for volumes found node-local), so that a driver re-registering on the
//     node (its CSINode entry gone for a moment) releases nothing.
//
// A volume that records an instance and whose K=v no node carries any
// longer is pinned to a node that is gone: an orphan, reported and held
// through its recorded instance, never released (the release asks for a
// hostname it can check again).
type nodeTopology struct {
	carriers map[string][]string            // "K=v" -> nodes labelled so
	keys     map[string]map[string][]string // node -> driver -> topology keys (CSINode)
}

// topologyHostPrefix marks, among a volume's hosts, the pin of a volume
// whose node is gone: it matches no node.
const topologyHostPrefix = "topology:"

func newNodeTopology(nodes []v1.Node, csinodes []storagev1.CSINode) *nodeTopology {
	t := &nodeTopology{carriers: map[string][]string{}, keys: map[string]map[string][]string{}}
	for i := range nodes {
		for k, v := range nodes[i].Labels {
			t.carriers[k+"="+v] = append(t.carriers[k+"="+v], nodes[i].Name)
		}
	}
	for i := range csinodes {
		drivers := map[string][]string{}
		for _, d := range csinodes[i].Spec.Drivers {
			drivers[d.Name] = d.TopologyKeys
		}
		t.keys[csinodes[i].Name] = drivers
	}
	return t
}

// zoneOrRegionKey reports whether a topology key names a zone or a region.
func zoneOrRegionKey(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "zone") || strings.Contains(k, "region")
}

// pinned returns the node a term of a CSI volume's affinity pins it to by
// its driver's topology key, if it does (see nodeTopology).
func (t *nodeTopology) pinned(pv *v1.PersistentVolume, term v1.NodeSelectorTerm) (string, bool) {
	if t == nil || pv.Spec.CSI == nil {
		return "", false
	}
	recorded := pv.Annotations[AnnotationInstanceID] != ""
	for _, r := range term.MatchExpressions {
		if r.Operator != v1.NodeSelectorOpIn || len(r.Values) != 1 || zoneOrRegionKey(r.Key) {
			continue
		}
		switch nodes := t.carriers[r.Key+"="+r.Values[0]]; {
		case len(nodes) == 1 && (recorded || slices.Contains(t.keys[nodes[0]][pv.Spec.CSI.Driver], r.Key)):
			return nodes[0], true
		case len(nodes) == 0 && recorded:
			return topologyHostPrefix + r.Key + "=" + r.Values[0], true
		}
	}
	return "", false
}

// listCSINodes lists the CSINode objects (from the watch cache with rv "0",
// past it with "").
func (b *Balancer) listCSINodes(ctx context.Context, rv string) ([]storagev1.CSINode, error) {
	l, err := b.kube.StorageV1().CSINodes().List(ctx, metav1.ListOptions{ResourceVersion: rv})
	if err != nil {
		return nil, fmt.Errorf("listing CSI nodes: %w", err)
	}
	return l.Items, nil
}
