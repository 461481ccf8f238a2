package hopeless

import (
	"fmt"
	"math/rand"
	"strconv"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/utils/clock"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// review17World is an informer-like view: every change replaces the object
// with a new pointer and a new resourceVersion. nilNotFound: a missing
// object is returned as a stale non-nil pointer with ok=false.
type review17World struct {
	claims      map[string]*v1.PersistentVolumeClaim
	pvs         map[string]*v1.PersistentVolume
	stale       map[string]any
	rv          int
	nilNotFound bool
}

func (w *review17World) nextRV() string { w.rv++; return strconv.Itoa(w.rv) }

func (w *review17World) lookup() shapes.VolumeLookup {
	return shapes.VolumeLookup{
		Claim: func(ns, name string) (*v1.PersistentVolumeClaim, bool) {
			c, ok := w.claims[ns+"/"+name]
			if !ok && !w.nilNotFound {
				if s, ok := w.stale["c/"+ns+"/"+name].(*v1.PersistentVolumeClaim); ok {
					return s, false
				}
			}
			return c, ok
		},
		PV: func(name string) (*v1.PersistentVolume, bool) {
			p, ok := w.pvs[name]
			if !ok && !w.nilNotFound {
				if s, ok := w.stale["p/"+name].(*v1.PersistentVolume); ok {
					return s, false
				}
			}
			return p, ok
		},
	}
}

// TestReview17RequirementsCacheIsFresh: the cached requirements and key of
// a pod always equal those computed afresh from the current claims and PVs,
// across random informer-style changes (replace, delete, create, rebind,
// bind-completed toggled, affinity changed) and lookups that return stale
// objects with ok=false.
func TestReview17RequirementsCacheIsFresh(t *testing.T) {
	for _, nilNotFound := range []bool{true, false} {
		t.Run(fmt.Sprintf("nilNotFound=%v", nilNotFound), func(t *testing.T) {
			rng := rand.New(rand.NewSource(17))
			opts := shapes.FeatureOptions(utilfeature.DefaultFeatureGate)
			opts.IdentityLabels = sets.New(v1.LabelHostname)
			store := shapes.NewStore(opts, false)
			nodes := []*v1.Node{}
			for i := range 6 {
				n := makeNode(fmt.Sprintf("n-%d", i)).Label(v1.LabelTopologyZone, fmt.Sprintf("z%d", i%3)).Obj()
				nodes = append(nodes, n)
				store.UpsertNode(n)
			}
			w := &review17World{claims: map[string]*v1.PersistentVolumeClaim{}, pvs: map[string]*v1.PersistentVolume{}, stale: map[string]any{}, nilNotFound: nilNotFound}
			c := newVerdictCache(store, w.lookup(), func() bool { return true }, clock.RealClock{})
			claimNames := []string{"a", "b", "c"}
			pvNames := []string{"pa", "pb", "pc", "pd"}
			newPV := func(name string) *v1.PersistentVolume {
				pv := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: w.nextRV()}}
				switch rng.Intn(4) {
				case 0:
				case 1:
					pv.Spec.NodeAffinity = &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
						MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{fmt.Sprintf("n-%d", rng.Intn(8))}}}}}}}
				default:
					pv.Spec.NodeAffinity = &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
						MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelTopologyZone, Operator: v1.NodeSelectorOpIn, Values: []string{fmt.Sprintf("z%d", rng.Intn(4))}}}}}}}
				}
				return pv
			}
			newClaim := func(name string) *v1.PersistentVolumeClaim {
				pvc := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, ResourceVersion: w.nextRV()}}
				if rng.Intn(4) > 0 {
					pvc.Spec.VolumeName = pvNames[rng.Intn(len(pvNames))]
				}
				if rng.Intn(3) > 0 {
					pvc.Annotations = map[string]string{"pv.kubernetes.io/bind-completed": "yes"}
				}
				return pvc
			}
			var pods []*v1.Pod
			newPod := func(i int) *v1.Pod {
				pw := makePod(fmt.Sprintf("p-%d", i)).UID(fmt.Sprintf("uid-%d", i))
				for range rng.Intn(3) + 1 {
					pw = pw.PVC(claimNames[rng.Intn(len(claimNames))])
				}
				p := pw.Obj()
				// the wrapper names volumes after claims; keep duplicates distinct
				for j := range p.Spec.Volumes {
					p.Spec.Volumes[j].Name = fmt.Sprintf("v%d", j)
				}
				return p
			}
			for i := range 5 {
				pods = append(pods, newPod(i))
			}
			check := func(step int) {
				for _, pod := range pods {
					req, key := c.requirements(pod)
					vols, pvKey, _ := shapes.ResolveBoundVolumes(pod, w.lookup())
					fresh := shapes.NewRequirements(pod, vols, store.Options())
					fkey := verdictKeyOf(pod, fresh, pvKey)
					if key != fkey {
						t.Fatalf("step %d pod %s: cached key %d, fresh key %d (pvKey %q)", step, pod.Name, key, fkey, pvKey)
					}
					for _, n := range nodes {
						a, b := req.Check(n), fresh.Check(n)
						if (a == nil) != (b == nil) || (a != nil && (a.Reason != b.Reason || a.Claim != b.Claim)) {
							t.Fatalf("step %d pod %s node %s: cached %+v fresh %+v", step, pod.Name, n.Name, a, b)
						}
					}
				}
			}
			for step := range 5000 {
				switch rng.Intn(7) {
				case 0, 1:
					n := claimNames[rng.Intn(len(claimNames))]
					w.claims["default/"+n] = newClaim(n)
				case 2:
					n := claimNames[rng.Intn(len(claimNames))]
					if old, ok := w.claims["default/"+n]; ok {
						w.stale["c/default/"+n] = old
					}
					delete(w.claims, "default/"+n)
				case 3, 4:
					n := pvNames[rng.Intn(len(pvNames))]
					w.pvs[n] = newPV(n)
				case 5:
					n := pvNames[rng.Intn(len(pvNames))]
					if old, ok := w.pvs[n]; ok {
						w.stale["p/"+n] = old
					}
					delete(w.pvs, n)
				case 6:
					i := rng.Intn(len(pods))
					pods[i] = newPod(i)
				}
				if rng.Intn(2) == 0 {
					check(step)
				}
			}
		})
	}
}
