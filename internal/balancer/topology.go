package balancer

import (
	"context"
	"fmt"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

// nodeTopology tells which CSI volumes are pinned to one node by their
// driver's own topology key (TopoLVM's topology.topolvm.io/node, OpenEBS
// LVM's and ZFS's openebs.io/nodename: the usual way to carve an instance
// store into volumes), as surely as by hostname.
//
// A term of a CSI volume's required node affinity pins it to node N when it
// has a requirement "K In [v]" with one value, and
//   - v names N itself: it is N's name, N's kubernetes.io/hostname label, or
//     the node ID N's CSINode records for the volume's driver (TopoLVM and
//     OpenEBS LVM/ZFS put the node's name there). A key whose value names a
//     place (a zone, an Outpost, a rack, a partition, an account) is never a
//     node's, even when that place has one node: the EBS CSI driver on an
//     Outpost pins its network volumes with topology.ebs.csi.aws.com/
//     outpost-id, and holding that node would hold its termination for up
//     to 48 hours for storage that is not on it;
//   - K is not a zone or region key (its name has neither "zone" nor
//     "region"), as a second guard;
//   - N is the only node labelled K=v;
//   - K is one of the topology keys N's CSINode lists for the volume's driver
//     (kubelet labels the node with the driver's accessible topology).
//
// A volume found node-local gets its instance recorded (AnnotationInstanceID,
// recordPlacement), and a record is trusted as it stands: the volume stays
// pinned to the one node labelled K=v while its driver re-registers (its
// CSINode entry, and with it a node-ID pin, gone for a moment), and to a
// node that is gone once no node carries K=v (an orphan, reported and held
// through its recorded instance, never released: the release asks for a
// hostname it can check again), as when the only storage node was replaced.
type nodeTopology struct {
	carriers map[string][]string            // "K=v" -> nodes labelled so
	keys     map[string]map[string][]string // node -> driver -> topology keys (CSINode)
	names    map[string]map[string]bool     // node -> the values that name it: its name and hostname label
	nodeIDs  map[string]map[string]string   // node -> driver -> node ID (CSINode)
	labels   map[string]map[string]string   // node -> labels
}

// topologyHostPrefix marks, among a volume's hosts, the pin of a volume
// whose node is gone: it matches no node.
const topologyHostPrefix = "topology:"

func newNodeTopology(nodes []v1.Node, csinodes []storagev1.CSINode) *nodeTopology {
	t := &nodeTopology{carriers: map[string][]string{}, keys: map[string]map[string][]string{},
		names: map[string]map[string]bool{}, nodeIDs: map[string]map[string]string{}, labels: map[string]map[string]string{}}
	for i := range nodes {
		n := &nodes[i]
		for k, v := range n.Labels {
			t.carriers[k+"="+v] = append(t.carriers[k+"="+v], n.Name)
		}
		t.names[n.Name] = map[string]bool{n.Name: true}
		if h := n.Labels[v1.LabelHostname]; h != "" {
			t.names[n.Name][h] = true
		}
		t.labels[n.Name] = n.Labels
	}
	for i := range csinodes {
		drivers := map[string][]string{}
		ids := map[string]string{}
		for _, d := range csinodes[i].Spec.Drivers {
			drivers[d.Name] = d.TopologyKeys
			ids[d.Name] = d.NodeID
		}
		t.keys[csinodes[i].Name] = drivers
		t.nodeIDs[csinodes[i].Name] = ids
	}
	return t
}

// zoneOrRegionKey reports whether a topology key names a zone or a region.
func zoneOrRegionKey(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "zone") || strings.Contains(k, "region")
}

// namesNode reports whether v names node itself for driver: its name, its
// hostname label, or its CSINode's node ID for driver.
func (t *nodeTopology) namesNode(node, driver, v string) bool {
	if v == "" {
		return false
	}
	return t.names[node][v] || t.nodeIDs[node][driver] == v
}

// selected returns the nodes a term of a local or hostPath volume's required
// node affinity selects, by the scheduler's own node selector matching; when
// none does (the node is gone, or the term is invalid), one mark that matches
// no node, naming the term, so that the volume is reported as an orphan.
func (t *nodeTopology) selected(term v1.NodeSelectorTerm) []string {
	sel, err := nodeaffinity.NewNodeSelector(&v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{term}})
	var out []string
	if err == nil {
		for node, labels := range t.labels {
			if sel.Match(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: labels}}) {
				out = append(out, node)
			}
		}
	}
	if len(out) == 0 {
		return []string{topologyHostPrefix + term.String()}
	}
	slices.Sort(out)
	return out
}

// pinned returns the node a term of a CSI volume's affinity pins it to by
// its driver's topology key, if it does (see nodeTopology).
func (t *nodeTopology) pinned(pv *v1.PersistentVolume, term v1.NodeSelectorTerm) (string, bool) {
	if t == nil || pv.Spec.CSI == nil {
		return "", false
	}
	driver := pv.Spec.CSI.Driver
	recorded := pv.Annotations[AnnotationInstanceID] != ""
	for _, r := range term.MatchExpressions {
		if r.Operator != v1.NodeSelectorOpIn || len(r.Values) != 1 || zoneOrRegionKey(r.Key) {
			continue
		}
		// A volume is recorded only once found node-local by the rule
		// below, so a record is trusted as it stands: while the driver
		// re-registers (its CSINode entry gone, a node-ID pin unprovable)
		// and when no node carries the value any more (the only storage
		// node is gone), the volume still holds its instance.
		switch nodes := t.carriers[r.Key+"="+r.Values[0]]; {
		case len(nodes) == 1 && recorded:
			return nodes[0], true
		case len(nodes) == 1 && t.namesNode(nodes[0], driver, r.Values[0]) && slices.Contains(t.keys[nodes[0]][driver], r.Key):
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
