package shapes

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"sync"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/ballast-k8s/ballast/config/nodegroups"
)

// Shape is an equivalence class of nodes: same labels (but identity labels),
// taints, allocatable and unschedulable. A static predicate gives the same
// answer for every member, unless it names an identity label.
type Shape struct {
	Key uint64
	// Rep is one member; static predicates evaluated on it hold for all.
	Rep     *v1.Node
	Members map[string]*v1.Node
}

// Template is a node the autoscaler could add: a group's template node or
// one of its variants' (nodegroups.NodeGroup.TemplateNodes).
type Template struct {
	Group nodegroups.NodeGroup
	Node  *v1.Node
}

// TemplateState says whether the templates can be trusted.
type TemplateState string

const (
	// TemplatesNotUsed: the cluster does not autoscale; only nodes count.
	TemplatesNotUsed TemplateState = "not-used"
	TemplatesOK      TemplateState = "ok"
	TemplatesMissing TemplateState = "missing"
	TemplatesInvalid TemplateState = "invalid"
	TemplatesStale   TemplateState = "stale"
)

// Store is the set of node shapes and templates. It is safe for concurrent use.
type Store struct {
	opts *Options

	mu        sync.RWMutex
	shapes    map[uint64]*Shape
	nodeShape map[string]uint64
	templates []Template
	tstate    TemplateState
	// gen changes when the set of shapes or templates changes: a verdict
	// that does not depend on identity stays valid while gen holds.
	gen uint64
	// memberGen changes on every node add, delete or move between shapes.
	memberGen uint64
	// starting are the nodes still starting (startingTaint), settled.
	starting map[string]*v1.Node
}

// NewStore returns an empty store. autoscaling says whether templates are
// expected; until SetTemplates is called they count as missing.
func NewStore(opts *Options, autoscaling bool) *Store {
	if opts.DeviceClasses == nil {
		opts.DeviceClasses = NewDeviceClasses()
	}
	s := &Store{opts: opts, shapes: map[uint64]*Shape{}, nodeShape: map[string]uint64{}, starting: map[string]*v1.Node{}, tstate: TemplatesNotUsed}
	if autoscaling {
		s.tstate = TemplatesMissing
	}
	return s
}

// Options returns the options the store evaluates with.
func (s *Store) Options() *Options { return s.opts }

// Generations returns the shape-set and membership generations.
func (s *Store) Generations() (gen, memberGen uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gen, s.memberGen
}

// ShapeKey hashes the fields static predicates read from a node.
func (s *Store) ShapeKey(n *v1.Node) uint64 {
	h := fnv.New64a()
	var buf [8]byte
	w := func(str string) {
		binary.LittleEndian.PutUint64(buf[:], uint64(len(str)))
		h.Write(buf[:])
		h.Write([]byte(str))
	}
	keys := make([]string, 0, len(n.Labels))
	for k := range n.Labels {
		if !s.opts.IdentityLabels.Has(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	w("labels")
	for _, k := range keys {
		w(k)
		w(n.Labels[k])
	}
	taints := make([]string, 0, len(n.Spec.Taints))
	for _, t := range n.Spec.Taints {
		taints = append(taints, t.Key+"\x00"+t.Value+"\x00"+string(t.Effect))
	}
	sort.Strings(taints)
	w("taints")
	for _, t := range taints {
		w(t)
	}
	res := make([]string, 0, len(n.Status.Allocatable))
	for name, q := range n.Status.Allocatable {
		res = append(res, string(name)+"\x00"+q.String())
	}
	sort.Strings(res)
	w("allocatable")
	for _, r := range res {
		w(r)
	}
	if n.Spec.Unschedulable {
		w("unschedulable")
	}
	return h.Sum64()
}

// UpsertNode adds or updates a node. It reports whether the shape set changed.
// The store keeps the node without its passing taints (settled).
func (s *Store) UpsertNode(n *v1.Node) bool {
	isStarting := startingNode(n)
	n = settled(n)
	key := s.ShapeKey(n)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, was := s.starting[n.Name]; was != isStarting || isStarting {
		if isStarting {
			s.starting[n.Name] = n
		} else {
			delete(s.starting, n.Name)
		}
		if was != isStarting && len(s.templates) > 0 {
			// A verdict that counted on what the node would become, or
			// could have, is due again (becomesFit; without templates a
			// starting node becomes nothing more).
			s.gen++
		}
	}
	old, had := s.nodeShape[n.Name]
	if had && old == key {
		sh := s.shapes[key]
		if identityChanged(s.opts.IdentityLabels, sh.Members[n.Name], n) {
			// Same shape, but a verdict that names nodes may change.
			s.memberGen++
		}
		sh.Members[n.Name] = n
		if sh.Rep.Name == n.Name {
			sh.Rep = n
		}
		return false
	}
	changed := false
	if had {
		changed = s.removeLocked(n.Name, old)
	}
	sh, ok := s.shapes[key]
	if !ok {
		sh = &Shape{Key: key, Rep: n, Members: map[string]*v1.Node{}}
		s.shapes[key] = sh
		changed = true
	}
	sh.Members[n.Name] = n
	s.nodeShape[n.Name] = key
	s.memberGen++
	if changed {
		s.gen++
	}
	return changed
}

// Taints a node carries only while it starts, or while a node condition
// holds, and that go away without anyone acting on the cluster: kubelet
// registers a node with node.cloudprovider.kubernetes.io/uninitialized until
// the cloud node controller initializes it; the NodeTaint admission plugin
// and the node lifecycle controller keep node.kubernetes.io/not-ready on it
// (NoSchedule, and NoExecute for taint-based eviction) until kubelet reports
// Ready, and map the other node conditions to taints the same way
// (controllers/nodelifecycle, nodeConditionToTaintKeyStatusMap);
// cluster-autoscaler's startup-taint and ignore-taint prefixes name taints an
// agent on the node removes once it is up (its FAQ, "How does Cluster
// Autoscaler treat nodes with status/startup/ignore taints?"), and CA treats
// all of these as absent when it plans. A pod that only such a taint keeps
// off a node is waiting for the node, never hopeless: when its group reached
// its maximum with the node CA just added for it, that starting node is the
// only one that could ever host it.
//
// Not here: node.kubernetes.io/unschedulable (a cordon is an operator's
// decision; spec.unschedulable is checked on its own), CA's
// ToBeDeletedByClusterAutoscaler (the node is going away) and
// node.cloudprovider.kubernetes.io/shutdown (its instance is stopped).
var (
	passingTaintKeys = sets.New(
		taintUninitialized,
		v1.TaintNodeNotReady,
		v1.TaintNodeUnreachable,
		v1.TaintNodeMemoryPressure,
		v1.TaintNodeDiskPressure,
		v1.TaintNodePIDPressure,
		v1.TaintNodeNetworkUnavailable,
	)
	passingTaintPrefixes = []string{
		"startup-taint.cluster-autoscaler.kubernetes.io/",
		"ignore-taint.cluster-autoscaler.kubernetes.io/",
	}
)

// passingTaint reports whether a taint goes away on its own (above).
func passingTaint(t *v1.Taint) bool {
	if passingTaintKeys.Has(t.Key) {
		return true
	}
	for _, p := range passingTaintPrefixes {
		if strings.HasPrefix(t.Key, p) {
			return true
		}
	}
	return false
}

// settled returns the node as it will be once started: without its passing
// taints. It copies only a node that has some; the caller's object is never
// changed.
func settled(n *v1.Node) *v1.Node {
	i := slices.IndexFunc(n.Spec.Taints, func(t v1.Taint) bool { return passingTaint(&t) })
	if i < 0 {
		return n
	}
	cp := *n
	cp.Spec.Taints = slices.DeleteFunc(slices.Clone(n.Spec.Taints), func(t v1.Taint) bool { return passingTaint(&t) })
	if len(cp.Spec.Taints) == 0 {
		cp.Spec.Taints = nil
	}
	return &cp
}

// startingNode reports whether a node is still starting: not yet initialized
// by the cloud node controller or not yet Ready, by its taints.
func startingNode(n *v1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == taintUninitialized || t.Key == v1.TaintNodeNotReady {
			return true
		}
	}
	return false
}

const taintUninitialized = "node.cloudprovider.kubernetes.io/uninitialized"

// becomesFit reports whether a starting node, once started, passes r. A
// starting node lacks labels still to come (the cloud node controller's
// zone, region, instance-type and zone-id when it initializes the node, the
// EBS CSI driver's zone once its node plugin runs), so it is taken for what
// it will become: the template of each group it is compatible with (every
// label the node has, but identity labels, the template has with the same
// value), whether or not the group can still grow, with the node's own
// labels, taints and allocatable on top. Without templates (no autoscaler)
// a starting node is only what it shows.
func (s *Store) becomesFit(r *Requirements) bool {
	if len(s.starting) == 0 {
		return false
	}
	for i := range s.templates {
		t := s.templates[i].Node
		for _, n := range s.starting {
			if !s.compatible(n, t) {
				continue
			}
			if r.Check(project(n, t)) == nil {
				return true
			}
		}
	}
	return false
}

// compatible reports whether the starting node n can become template t.
func (s *Store) compatible(n, t *v1.Node) bool {
	for k, v := range n.Labels {
		if s.opts.IdentityLabels.Has(k) {
			continue
		}
		if tv, ok := t.Labels[k]; ok && tv != v {
			return false
		}
	}
	return true
}

// project is the node n once started, as template t says it will be.
func project(n, t *v1.Node) *v1.Node {
	cp := *n
	cp.Labels = make(map[string]string, len(t.Labels)+len(n.Labels))
	for k, v := range t.Labels {
		cp.Labels[k] = v
	}
	for k, v := range n.Labels {
		cp.Labels[k] = v
	}
	return &cp
}

// identityChanged reports whether an identity label of the node changed.
func identityChanged(identity sets.Set[string], old, n *v1.Node) bool {
	if old == nil {
		return true
	}
	for k := range identity {
		ov, oldHas := old.Labels[k]
		nv, newHas := n.Labels[k]
		if oldHas != newHas || ov != nv {
			return true
		}
	}
	return false
}

// UpsertDeviceClass records the extended resource names a DeviceClass maps.
// It reports whether they changed, which changes verdicts.
func (s *Store) UpsertDeviceClass(dc *resourceapi.DeviceClass) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := s.opts.DeviceClasses.Upsert(dc)
	if changed {
		s.gen++
	}
	return changed
}

// DeleteDeviceClass forgets a deleted DeviceClass (its last object). It
// reports whether the mapped names changed.
func (s *Store) DeleteDeviceClass(dc *resourceapi.DeviceClass) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := s.opts.DeviceClasses.Delete(dc)
	if changed {
		s.gen++
	}
	return changed
}

// DeleteNode removes a node. It reports whether the shape set changed.
func (s *Store) DeleteNode(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, was := s.starting[name]; was {
		delete(s.starting, name)
		if len(s.templates) > 0 {
			s.gen++
		}
	}
	key, ok := s.nodeShape[name]
	if !ok {
		return false
	}
	changed := s.removeLocked(name, key)
	s.memberGen++
	if changed {
		s.gen++
	}
	return changed
}

func (s *Store) removeLocked(name string, key uint64) bool {
	delete(s.nodeShape, name)
	sh := s.shapes[key]
	delete(sh.Members, name)
	if len(sh.Members) == 0 {
		delete(s.shapes, key)
		return true
	}
	if sh.Rep.Name == name {
		for _, m := range sh.Members {
			sh.Rep = m
			break
		}
	}
	return false
}

// SetTemplates replaces the node-group templates. state must be TemplatesOK
// for list to count; any other state makes the store fail open.
func (s *Store) SetTemplates(list *nodegroups.NodeGroupList, state TemplateState) {
	var ts []Template
	if list != nil && state == TemplatesOK {
		// One template per template node: the group's own and one per
		// variant, so the group hosts a pod when any of them does.
		for _, g := range list.NodeGroups {
			for _, n := range g.TemplateNodes() {
				ts = append(ts, Template{Group: g, Node: n})
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tstate == TemplatesNotUsed {
		return
	}
	s.templates, s.tstate = ts, state
	s.gen++
}

// TemplateState returns whether templates are trusted.
func (s *Store) TemplateState() TemplateState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tstate
}

// Counts returns the number of nodes, shapes and templates.
func (s *Store) Counts() (nodes, shapes, templates int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.nodeShape), len(s.shapes), len(s.templates)
}

// Verdict is the outcome of evaluating a pod against every shape and template.
type Verdict struct {
	// Hopeless: no node and no template passes the static predicates.
	Hopeless bool
	// FailOpen: the store cannot decide (templates missing, invalid or stale).
	FailOpen bool
	Reason   Reason
	Message  string
	// Nodes are the names of the nodes that pass, when few enough to be
	// worth narrowing Filter to; nil means "do not narrow".
	Nodes sets.Set[string]
	// Gen and MemberGen are the store generations the verdict was computed at.
	Gen, MemberGen uint64
}

// narrowLimit is the fraction of nodes under which a list of passing nodes is
// worth building: above it Filter would not save more than the set costs.
const narrowLimit = 0.5

// Evaluate computes the verdict of r against every shape and template.
func (s *Store) Evaluate(r *Requirements) Verdict {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := Verdict{Gen: s.gen, MemberGen: s.memberGen}
	if s.tstate != TemplatesNotUsed && s.tstate != TemplatesOK {
		v.FailOpen = true
		return v
	}
	var failures []*Failure
	passing := 0
	// Passing nodes, by whole shape or (identity) one by one, for narrowing.
	var passingShapes []*Shape
	var passingMembers []string
	for _, sh := range s.shapes {
		if r.identity {
			for name, m := range sh.Members {
				if f := r.Check(m); f != nil {
					failures = append(failures, f)
					continue
				}
				passing++
				passingMembers = append(passingMembers, name)
			}
			continue
		}
		if f := r.Check(sh.Rep); f != nil {
			failures = append(failures, f)
			continue
		}
		passing += len(sh.Members)
		passingShapes = append(passingShapes, sh)
	}
	templateFits := false
	for i := range s.templates {
		t := &s.templates[i]
		if !t.Group.CanGrow() {
			continue
		}
		if f := r.Check(t.Node); f != nil {
			failures = append(failures, f)
			continue
		}
		templateFits = true
	}
	if passing == 0 && !templateFits && s.becomesFit(r) {
		templateFits = true
	}
	if passing == 0 && !templateFits {
		v.Hopeless = true
		v.Reason, v.Message = summarize(r, failures)
		return v
	}
	if passing > 0 && float64(passing) < narrowLimit*float64(len(s.nodeShape)) {
		v.Nodes = sets.New(passingMembers...)
		for _, sh := range passingShapes {
			for name := range sh.Members {
				v.Nodes.Insert(name)
			}
		}
	}
	return v
}

// Fits reports whether node passes all of r's static predicates.
func Fits(r *Requirements, node *v1.Node) bool { return r.Check(node) == nil }

// NodeChange is one node change the store took: Old is nil for an add,
// New nil for a delete.
type NodeChange struct{ Old, New *v1.Node }

// NodeChangesMatter reports whether the node changes, which the store has
// taken, can have changed a hopeless verdict of r whose reason was reason.
// Evaluate takes each node's first failing predicate (reasonOrder), and the
// verdict's reason and message from the failures at the latest of them;
// templates and DeviceClasses do not change with a node. So the verdict
// stands when every changed node, before and after, is not starting
// (becomesFit) and fails r at an earlier predicate than reason, or at
// reason's own when its message does not depend on the node (the pod's
// affinity, a cordon, a pod's only pinned volume) and a node the changes
// did not touch, or a template, still fails r there. Anything else may
// change it.
func (s *Store) NodeChangesMatter(r *Requirements, reason Reason, changes []NodeChange) bool {
	rank := slices.Index(reasonOrder, reason)
	if rank < 0 {
		return true
	}
	sameMessage := reason == ReasonNodeAffinity || reason == ReasonUnschedulable ||
		(reason == ReasonVolumeNodeAffinity && len(r.volumes) == 1)
	atReason := false
	for _, c := range changes {
		for _, node := range [2]*v1.Node{c.Old, c.New} {
			if node == nil {
				continue
			}
			if startingNode(node) {
				return true
			}
			f := r.Check(settled(node))
			if f == nil {
				return true
			}
			switch at := slices.Index(reasonOrder, f.Reason); {
			case at > rank, at == rank && !sameMessage:
				return true
			case at == rank:
				atReason = true
			}
		}
	}
	// Only now the names: most weighings end above, thousands per change.
	return atReason && !s.failsAt(r, rank, changedNodes(changes))
}

// changedNodes returns the names of the nodes the changes touched.
func changedNodes(changes []NodeChange) sets.Set[string] {
	names := sets.New[string]()
	for _, c := range changes {
		for _, node := range [2]*v1.Node{c.Old, c.New} {
			if node != nil {
				names.Insert(node.Name)
			}
		}
	}
	return names
}

// failsAt reports whether a node not in skip, or a template of a group that
// can grow, fails r at the predicate of rank (reasonOrder).
func (s *Store) failsAt(r *Requirements, rank int, skip sets.Set[string]) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i := range s.templates {
		if t := &s.templates[i]; t.Group.CanGrow() {
			if f := r.Check(t.Node); f != nil && slices.Index(reasonOrder, f.Reason) == rank {
				return true
			}
		}
	}
	for _, sh := range s.shapes {
		for name, m := range sh.Members {
			if skip.Has(name) {
				continue
			}
			if f := r.Check(m); f != nil && slices.Index(reasonOrder, f.Reason) == rank {
				return true
			}
		}
	}
	return false
}

// sortedReasons orders the distinct reasons of failures by reasonOrder.
func sortedReasons(failures []*Failure) []Reason {
	seen := map[Reason]bool{}
	for _, f := range failures {
		seen[f.Reason] = true
	}
	var out []Reason
	for _, r := range reasonOrder {
		if seen[r] {
			out = append(out, r)
		}
	}
	return slices.Clip(out)
}
