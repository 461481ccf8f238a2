package balancer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/klog/v2"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/asg"
)

// cluster-autoscaler's node-template tags (cloudprovider/aws/README.md).
const (
	tagLabelPrefix    = "k8s.io/cluster-autoscaler/node-template/label/"
	tagTaintPrefix    = "k8s.io/cluster-autoscaler/node-template/taint/"
	tagResourcePrefix = "k8s.io/cluster-autoscaler/node-template/resources/"
)

// An EKS managed node group's ASG carries eks:cluster-name and
// eks:nodegroup-name; its nodes the label eks.amazonaws.com/nodegroup.
const (
	eksTagMarker      = "eks:"
	labelEKSNodegroup = "eks.amazonaws.com/nodegroup"
)

// Labels the node a group launches carries besides the well-known stable
// ones: kubelet sets the beta os/arch labels (pkg/kubelet, initialNode), the
// cloud node controller the beta zone, region and instance-type labels
// (k8s.io/cloud-provider, controllers/node) and cloud-provider-aws the zone
// id, the EBS CSI driver's node plugin its topology key. cluster-autoscaler's
// AWS template carries the EBS key, and its template sanitizer adds the beta
// zone, region and instance-type labels from the stable ones.
const (
	labelEBSZone = "topology.ebs.csi.aws.com/zone"
	labelZoneID  = "topology.k8s.aws/zone-id"
	labelBetaOS  = "beta.kubernetes.io/os"
	labelBetaArc = "beta.kubernetes.io/arch"
)

// Taints cluster-autoscaler strips from a template (its FAQ, "How does
// Cluster Autoscaler treat nodes with status/startup/ignore taints?"): a
// startup taint is removed once the node is initialized, a status taint
// says the node is not to be used for now, and an ignore taint is a startup
// taint. The autoscaler's own taints and node-condition taints go as well.
var (
	strippedTaintPrefixes = []string{
		"ignore-taint.cluster-autoscaler.kubernetes.io/",
		"startup-taint.cluster-autoscaler.kubernetes.io/",
		"status-taint.cluster-autoscaler.kubernetes.io/",
	}
	// startupTaintPrefixes are the prefixes cluster-autoscaler takes for
	// startup taints whatever its flags (NewTaintConfig).
	startupTaintPrefixes = []string{
		"ignore-taint.cluster-autoscaler.kubernetes.io/",
		"startup-taint.cluster-autoscaler.kubernetes.io/",
	}
	strippedTaintKeys = map[string]bool{
		"ToBeDeletedByClusterAutoscaler":                 true,
		"DeletionCandidateOfClusterAutoscaler":           true,
		v1.TaintNodeNotReady:                             true,
		v1.TaintNodeUnreachable:                          true,
		v1.TaintNodeUnschedulable:                        true,
		v1.TaintNodeMemoryPressure:                       true,
		v1.TaintNodeDiskPressure:                         true,
		v1.TaintNodeNetworkUnavailable:                   true,
		v1.TaintNodePIDPressure:                          true,
		"node.cloudprovider.kubernetes.io/uninitialized": true,
		"node.cloudprovider.kubernetes.io/shutdown":      true,
		"NodeWithImpairedVolumes":                        true,
		"cloud.google.com/impending-node-termination":    true,
	}
)

// strippedTaint reports whether cluster-autoscaler leaves the taint out of
// its templates.
// templateState is what the template step keeps between loops.
type templateState struct {
	types           map[string]asg.InstanceType // instance types never change
	launchTemplates map[asg.LaunchTemplateRef]cached
	eks             map[string]eksEntry // DescribeNodegroup by cluster/nodegroup (templates_eks.go)
	// lastNodes: what is remembered of each group's good nodes, by group
	// (templates_nodes.go); lastLoaded once read back from the ConfigMap.
	lastNodes  map[string]lastNode
	lastLoaded bool
}

type cached struct {
	value string
	at    time.Time
}

func strippedTaint(key string) bool {
	if strippedTaintKeys[key] {
		return true
	}
	for _, p := range strippedTaintPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// zoneIDs maps zone names to zone ids as the nodes' labels show them (the
// mapping is per account, and the nodes share the cluster's account).
func zoneIDs(nodes []*v1.Node) map[string]string {
	ids := map[string]string{}
	for _, n := range nodes {
		if z, id := n.Labels[v1.LabelTopologyZone], n.Labels[labelZoneID]; z != "" && id != "" {
			ids[z] = id
		}
	}
	return ids
}

// publish writes the node-group templates into the ConfigMap. When a group's
// template cannot be built the list is left as it was: a list missing a group
// would make pods that need it look hopeless, while a list that grows stale
// makes the scheduler plugin fail open.
func (b *Balancer) publish(ctx context.Context, inv *inventory, w *warnings) error {
	if err := b.rememberNodes(ctx, inv, w); err != nil {
		return err // no list without the remembered nodes: it could be narrower than CA's templates
	}
	typeOf := map[string]string{} // group -> instance type
	var want []string
	for i := range inv.groups {
		g := &inv.groups[i]
		t, err := b.instanceType(ctx, g)
		if err != nil {
			w.warn(ReasonTemplateIncomplete, "%s", msgInstanceTypeUnknown(g.Name, err))
		}
		if t != "" {
			typeOf[g.Name] = t
			if _, ok := b.templates.types[t]; !ok && !contains(want, t) {
				want = append(want, t)
			}
		}
	}
	// A type EC2 does not know cannot be launched: its group is left out of
	// the list (reported), and spoils no other group's template.
	unknown := map[string]bool{}
	if len(want) > 0 {
		got, err := b.cloud.DescribeInstanceTypes(ctx, want)
		if err != nil {
			w.warn(ReasonTemplateIncomplete, "%s", msgInstanceTypesNotDescribed(want, err))
		}
		var ue *asg.UnknownInstanceTypesError
		if errors.As(err, &ue) {
			for _, n := range ue.Names {
				unknown[n] = true
			}
		}
		for _, t := range got {
			b.templates.types[t.Name] = t
		}
	}

	list := &nodegroups.NodeGroupList{APIVersion: nodegroups.APIVersion, Kind: nodegroups.Kind, Source: Source, NodeGroups: []nodegroups.NodeGroup{}}
	complete := true
	ids := zoneIDs(inv.nodes)
	for i := range inv.groups {
		g := &inv.groups[i]
		var it *asg.InstanceType
		if t, ok := b.templates.types[typeOf[g.Name]]; ok {
			it = &t
		}
		ng := template(g, it, ids, w)
		if err := b.eksTemplate(ctx, &ng, w); err != nil {
			w.warn(ReasonTemplateIncomplete, "%s", msgNoTemplate(g.Name, msgEKSFailed(err)))
			complete = false
			continue
		}
		ng.Taints = b.opts.Templates.sanitize(ng.Taints)
		_, cpu := ng.Allocatable[v1.ResourceCPU]
		_, mem := ng.Allocatable[v1.ResourceMemory]
		if t := typeOf[g.Name]; unknown[t] && (!cpu || !mem) {
			w.warn(ReasonTemplateIncomplete, "%s", msgNoTemplate(g.Name, "EC2 does not know its instance type "+t))
			continue
		}
		tags := copyTemplate(ng) // CA's template from the tags, before widening
		e, remembered := b.templates.lastNodes[g.Name]
		if remembered {
			widen(&ng, e) // never stricter than CA's template from the group's nodes
		}
		if _, cpu := ng.Allocatable[v1.ResourceCPU]; !cpu {
			w.warn(ReasonTemplateIncomplete, "%s", msgNoTemplate(g.Name, "its instance type is unknown and no node-template tags give cpu"))
			complete = false
			continue
		}
		if _, mem := ng.Allocatable[v1.ResourceMemory]; !mem {
			w.warn(ReasonTemplateIncomplete, "%s", msgNoTemplate(g.Name, "its instance type is unknown and no node-template tags give memory"))
			complete = false
			continue
		}
		one := &nodegroups.NodeGroupList{APIVersion: nodegroups.APIVersion, Kind: nodegroups.Kind, NodeGroups: []nodegroups.NodeGroup{ng}}
		if errs := nodegroups.Validate(one); len(errs) > 0 {
			w.warn(ReasonTemplateIncomplete, "%s", msgNoTemplate(g.Name, errs.ToAggregate().Error()))
			complete = false
			continue
		}
		// Each template CA may build for the group, exactly, besides the
		// widened one: the tags template and each remembered node's.
		if vs := variants(g.Name, ng, tags, e, w); len(vs) > 0 {
			one.NodeGroups[0].Variants = vs
			if errs := nodegroups.Validate(one); len(errs) > 0 {
				w.warn(ReasonTemplateIncomplete, "Group %s: its template variants are not published: %v", g.Name, errs.ToAggregate())
			} else {
				ng.Variants = vs
			}
		}
		list.NodeGroups = append(list.NodeGroups, ng)
	}
	if !complete {
		// Reported; the published list ages and the plugin fails open. What
		// is remembered of the groups' nodes is saved all the same, or a
		// restart meanwhile forgets it (review 10d #4).
		return b.writeLastNodes(ctx, w)
	}
	return b.writeConfigMap(ctx, list, w)
}

// maxConfigMapBytes bounds the ConfigMap's data: "The data stored in a
// ConfigMap cannot exceed 1 MiB" (Kubernetes documentation, ConfigMaps); the
// rest is headroom for the object's metadata.
const maxConfigMapBytes = 900 << 10

// encodeData renders the list (nil: none) and the memory for the ConfigMap,
// beside other bytes of data kept in it. When they exceed maxConfigMapBytes,
// fewer template variants per group are published and fewer nodes per group
// remembered, the most first, until they fit (reported: those groups'
// widened templates remain); then the memory is left out; data is nil when
// even that does not fit (reported): nothing is to be written.
func (b *Balancer) encodeData(list *nodegroups.NodeGroupList, other int, w *warnings) (map[string]string, error) {
	for limit := nodegroups.MaxVariants; ; limit-- {
		trimmed := false
		if list != nil {
			for i := range list.NodeGroups {
				if g := &list.NodeGroups[i]; len(g.Variants) > limit {
					g.Variants, trimmed = g.Variants[:limit], true
				}
			}
		}
		for name, e := range b.templates.lastNodes {
			if len(e.Nodes) > limit {
				e.Nodes, trimmed = e.Nodes[:limit], true
				b.templates.lastNodes[name] = e
			}
		}
		data := map[string]string{}
		if list != nil {
			var err error
			if data, err = nodegroups.Encode(list); err != nil {
				return nil, fmt.Errorf("encoding node groups: %w", err)
			}
		}
		data[lastNodesKey] = encodeLastNodes(b.templates.lastNodes, true)
		size := other
		for k, v := range data {
			size += len(k) + len(v)
		}
		if size <= maxConfigMapBytes {
			if trimmed {
				w.warn(ReasonTemplateIncomplete, "ConfigMap %s/%s: at most %d template variants per group are published and remembered, to keep its data under %d bytes; the groups' other nodes only widen their templates",
					b.opts.ConfigMapNamespace, b.opts.ConfigMapName, limit, maxConfigMapBytes)
			}
			return data, nil
		}
		if limit > 0 {
			continue
		}
		// No variant left to trim: the list goes before the memory (the
		// memory only survives restarts), and what still does not fit is
		// not sent at all, since the API server would refuse it on every
		// loop; the list then goes stale and the plugin fails open.
		if size-len(lastNodesKey)-len(data[lastNodesKey]) <= maxConfigMapBytes && list != nil {
			delete(data, lastNodesKey)
			w.warn(ReasonTemplateIncomplete, "ConfigMap %s/%s: what is remembered of the groups' nodes is not saved, to keep its data under %d bytes (a restart publishes their tags templates until their nodes are seen again)",
				b.opts.ConfigMapNamespace, b.opts.ConfigMapName, maxConfigMapBytes)
			return data, nil
		}
		w.warn(ReasonTemplateIncomplete, "ConfigMap %s/%s is not written: its data would be %d bytes, more than the %d the API server takes with headroom; the scheduler parks nothing once the list it holds goes stale",
			b.opts.ConfigMapNamespace, b.opts.ConfigMapName, size, maxConfigMapBytes)
		return nil, nil
	}
}

// copyTemplate copies a template deeply enough that widening the original
// leaves the copy alone.
func copyTemplate(ng nodegroups.NodeGroup) nodegroups.NodeGroup {
	ng.Labels = maps.Clone(ng.Labels)
	ng.Taints = slices.Clone(ng.Taints)
	alloc := make(v1.ResourceList, len(ng.Allocatable))
	for r, q := range ng.Allocatable {
		alloc[r] = q.DeepCopy()
	}
	ng.Allocatable = alloc
	return ng
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// instanceType picks the type the group would launch next, as
// cluster-autoscaler does: the first override of a mixed instances policy,
// else the launch template's. A running instance's type stands in for the
// launch template to save a call per group.
func (b *Balancer) instanceType(ctx context.Context, g *asg.Group) (string, error) {
	if len(g.OverrideTypes) > 0 {
		return g.OverrideTypes[0], nil
	}
	for _, i := range g.Instances {
		if i.InstanceType != "" && i.LifecycleState == "InService" {
			return i.InstanceType, nil
		}
	}
	if g.LaunchTemplate == (asg.LaunchTemplateRef{}) {
		return "", errors.New("no instances, no mixed instances policy and no launch template")
	}
	if c, ok := b.templates.launchTemplates[g.LaunchTemplate]; ok && b.clock.Since(c.at) < b.opts.TemplateRefresh*10 {
		return c.value, nil
	}
	t, err := b.cloud.LaunchTemplateInstanceType(ctx, g.LaunchTemplate)
	if err != nil {
		return "", err
	}
	b.templates.launchTemplates[g.LaunchTemplate] = cached{value: t, at: b.clock.Now()}
	if t == "" {
		return "", fmt.Errorf("launch template %+v names no instance type", g.LaunchTemplate)
	}
	return t, nil
}

// template builds a group's template from the instance type and the group's
// node-template tags: the node the group launches, as far as the static
// predicates can tell, and what cluster-autoscaler's template holds. ids maps
// zones to zone ids (zoneIDs). A malformed tag is reported and skipped.
func template(g *asg.Group, it *asg.InstanceType, ids map[string]string, w *warnings) nodegroups.NodeGroup {
	ng := nodegroups.NodeGroup{
		Name: g.Name, MinSize: g.MinSize, MaxSize: g.MaxSize, CurrentSize: g.DesiredCapacity,
		Labels: map[string]string{v1.LabelOSStable: "linux", labelBetaOS: "linux"}, Allocatable: v1.ResourceList{},
	}
	if len(g.Zones) == 1 {
		ng.Zone = g.Zones[0]
	}
	if len(g.Zones) > 0 {
		// Like cluster-autoscaler, a multi-zone group's template takes its first zone.
		zone := g.Zones[0]
		region := strings.TrimRight(zone, "abcdefghijklmnopqrstuvwxyz")
		ng.Labels[v1.LabelTopologyZone] = zone
		ng.Labels[v1.LabelFailureDomainBetaZone] = zone
		ng.Labels[labelEBSZone] = zone
		ng.Labels[v1.LabelTopologyRegion] = region
		ng.Labels[v1.LabelFailureDomainBetaRegion] = region
		if id := ids[zone]; id != "" {
			ng.Labels[labelZoneID] = id
		}
	}
	if it != nil {
		ng.InstanceTypes = []string{it.Name}
		ng.Labels[v1.LabelInstanceTypeStable] = it.Name
		ng.Labels[v1.LabelInstanceType] = it.Name
		ng.Labels[v1.LabelArchStable] = it.KubeArch()
		ng.Labels[labelBetaArc] = it.KubeArch()
		// What CA's own template offers: a pod CA would add a node for is
		// never Ballast's to park.
		ng.Allocatable = it.TemplateAllocatable()
	}
	for _, k := range sortedKeys(g.Tags) {
		v := g.Tags[k]
		switch {
		case strings.HasPrefix(k, tagLabelPrefix):
			key := strings.TrimPrefix(k, tagLabelPrefix)
			if msgs := append(validation.IsQualifiedName(key), validation.IsValidLabelValue(v)...); len(msgs) > 0 {
				w.warn(ReasonMalformedTag, "%s", msgMalformedTag(g.Name, k, v, strings.Join(msgs, "; ")))
				continue
			}
			ng.Labels[key] = v
		case strings.HasPrefix(k, tagTaintPrefix):
			t, err := parseTaint(strings.TrimPrefix(k, tagTaintPrefix), v)
			if err != nil {
				w.warn(ReasonMalformedTag, "%s", msgMalformedTag(g.Name, k, v, err.Error()))
				continue
			}
			if strippedTaint(t.Key) {
				continue // gone by the time the node takes pods, as in cluster-autoscaler's template
			}
			ng.Taints = append(ng.Taints, t)
		case strings.HasPrefix(k, tagResourcePrefix):
			name := strings.TrimPrefix(k, tagResourcePrefix)
			q, err := resource.ParseQuantity(v)
			if err == nil && q.Sign() < 0 {
				err = errors.New("negative")
			}
			if msgs := validation.IsQualifiedName(name); err == nil && len(msgs) > 0 {
				err = errors.New(strings.Join(msgs, "; "))
			}
			if err != nil {
				w.warn(ReasonMalformedTag, "%s", msgMalformedTag(g.Name, k, v, err.Error()))
				continue
			}
			ng.Allocatable[v1.ResourceName(name)] = q
		case strings.Contains(k, eksTagMarker):
			// CA 1.36.1 labels its template with every "eks:" tag, named by
			// what follows the marker (eks:nodegroup-name=ng gives
			// nodegroup-name=ng); the nodes do not carry these, so they only
			// widen what the template admits, as CA's does.
			key := strings.SplitN(k, eksTagMarker, 3)[1]
			if key == "" {
				continue
			}
			if msgs := append(validation.IsQualifiedName(key), validation.IsValidLabelValue(v)...); len(msgs) > 0 {
				w.warn(ReasonMalformedTag, "Group %s: skipped tag %s=%q: %s", g.Name, k, v, strings.Join(msgs, "; "))
				continue
			}
			ng.Labels[key] = v
		}
	}
	// An EKS managed node group: its nodes carry eks.amazonaws.com/nodegroup
	// (and so does CA's template, from EKS DescribeNodegroup), unless a
	// node-template tag says otherwise.
	if name, cluster := g.Tags["eks:nodegroup-name"], g.Tags["eks:cluster-name"]; name != "" && cluster != "" {
		if _, set := ng.Labels[labelEKSNodegroup]; !set && len(validation.IsValidLabelValue(name)) == 0 {
			ng.Labels[labelEKSNodegroup] = name
		}
	}
	if len(ng.Taints) == 0 {
		ng.Taints = nil
	}
	return ng
}

// parseTaint reads cluster-autoscaler's taint tag value, "<value>:<Effect>".
func parseTaint(key, value string) (v1.Taint, error) {
	val, effect, ok := strings.Cut(value, ":")
	if !ok {
		return v1.Taint{}, errors.New(`want "<value>:<Effect>"`)
	}
	t := v1.Taint{Key: key, Value: val, Effect: v1.TaintEffect(effect)}
	switch t.Effect {
	case v1.TaintEffectNoSchedule, v1.TaintEffectPreferNoSchedule, v1.TaintEffectNoExecute:
	default:
		return v1.Taint{}, fmt.Errorf("effect %q is not NoSchedule, PreferNoSchedule or NoExecute", effect)
	}
	if msgs := append(validation.IsQualifiedName(key), validation.IsValidLabelValue(val)...); len(msgs) > 0 {
		return v1.Taint{}, errors.New(strings.Join(msgs, "; "))
	}
	return t, nil
}

// writeConfigMap creates or updates the ConfigMap when the list changed or
// its generatedAt is older than TemplateRefresh.
func (b *Balancer) writeConfigMap(ctx context.Context, list *nodegroups.NodeGroupList, w *warnings) error {
	now := b.clock.Now().UTC().Truncate(1e9)
	list.GeneratedAt = &now
	data, err := b.encodeData(list, 0, w)
	if err != nil || data == nil {
		return err
	}
	cms := b.kube.CoreV1().ConfigMaps(b.opts.ConfigMapNamespace)
	cm, err := cms.Get(ctx, b.opts.ConfigMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm, err := b.createConfigMap(ctx, data)
		if err != nil {
			return err
		}
		b.recorder.Eventf(cm, v1.EventTypeNormal, ReasonPublishedNodeTemplates, "%s", msgPublished(len(list.NodeGroups)))
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting ConfigMap: %w", err)
	}
	if old, err := nodegroups.Decode(cm.Data); err == nil && old.GeneratedAt != nil && now.Sub(*old.GeneratedAt) < b.opts.TemplateRefresh {
		// The list and the memory as they would be written: variants and
		// the memory may have been left out to keep under the limit.
		sameMemory := cm.Data[lastNodesKey] == data[lastNodesKey] ||
			data[lastNodesKey] != "" && sameLastNodes(cm.Data[lastNodesKey], b.templates.lastNodes)
		if next, err := nodegroups.Decode(data); err == nil && sameMemory {
			next.GeneratedAt = old.GeneratedAt
			if reflect.DeepEqual(normalize(old), normalize(next)) {
				return nil
			}
		}
	}
	_, hadList := cm.Data[nodegroups.DataKey]
	cm = cm.DeepCopy()
	cm.Data = data
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: Source}); err != nil {
		return fmt.Errorf("updating ConfigMap %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	if !hadList {
		// The first list, into the ConfigMap that held only the memory.
		b.recorder.Eventf(cm, v1.EventTypeNormal, ReasonPublishedNodeTemplates, "%s", msgPublished(len(list.NodeGroups)))
	}
	klog.FromContext(ctx).V(2).Info("Published node groups", "groups", len(list.NodeGroups))
	return nil
}

// createConfigMap creates the published ConfigMap with data.
func (b *Balancer) createConfigMap(ctx context.Context, data map[string]string) (*v1.ConfigMap, error) {
	cm := &v1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: b.opts.ConfigMapNamespace, Name: b.opts.ConfigMapName,
			Labels: map[string]string{"app.kubernetes.io/managed-by": Source}},
		Data: data,
	}
	if _, err := b.kube.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{FieldManager: Source}); err != nil {
		return nil, fmt.Errorf("creating ConfigMap %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return cm, nil
}

// writeLastNodes saves what is remembered of the groups' nodes in the
// published ConfigMap, leaving its list alone. Without a ConfigMap it creates
// one that holds only the memory (no list: the scheduler plugin counts the
// templates as missing and fails open), when there is something to
// remember, so that a restart before the first list keeps it (review 10d #4).
func (b *Balancer) writeLastNodes(ctx context.Context, w *warnings) error {
	cms := b.kube.CoreV1().ConfigMaps(b.opts.ConfigMapNamespace)
	cm, err := cms.Get(ctx, b.opts.ConfigMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if len(b.templates.lastNodes) == 0 {
			return nil
		}
		data, err := b.encodeData(nil, 0, w)
		if err != nil || data == nil {
			return err
		}
		_, err = b.createConfigMap(ctx, data)
		return err
	}
	if err != nil {
		return fmt.Errorf("getting ConfigMap: %w", err)
	}
	other := 0
	for k, v := range cm.Data {
		if k != lastNodesKey {
			other += len(k) + len(v)
		}
	}
	data, err := b.encodeData(nil, other, w)
	if err != nil || data == nil {
		return err
	}
	if cm.Data[lastNodesKey] == data[lastNodesKey] || data[lastNodesKey] != "" && sameLastNodes(cm.Data[lastNodesKey], b.templates.lastNodes) {
		return nil
	}
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[lastNodesKey] = data[lastNodesKey]
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: Source}); err != nil {
		return fmt.Errorf("updating ConfigMap %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return nil
}

// normalize renders a list the way it is stored, so that comparing two lists
// ignores quantity formatting and nil-versus-empty.
func normalize(l *nodegroups.NodeGroupList) map[string]string {
	data, err := nodegroups.Encode(l)
	if err != nil {
		return nil
	}
	return data
}
