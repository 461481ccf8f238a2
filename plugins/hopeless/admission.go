package hopeless

import (
	"context"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// The admission extension points: a pod is judged (verdicts.go) and, if
// hopeless, parked (parking.go) before any node is evaluated.

// SignPod returns the fragments of the fields the static predicates read, so
// that upstream batching stays on. The requests fragment comes from
// NodeResourcesFit, under the same key, and is not repeated here.
func (pl *HopelessPods) SignPod(_ context.Context, pod *v1.Pod) ([]fwk.SignFragment, *fwk.Status) {
	aff, err := fwk.NodeAffinitySigner(pod)
	if err != nil {
		return nil, fwk.AsStatus(err)
	}
	return []fwk.SignFragment{
		{Key: fwk.NodeSelectorSignerName, Value: pod.Spec.NodeSelector},
		{Key: fwk.NodeAffinitySignerName, Value: aff},
		{Key: fwk.TolerationsSignerName, Value: fwk.TolerationsSigner(pod)},
		{Key: fwk.VolumesSignerName, Value: fwk.VolumesSigner(pod)},
	}, nil
}

// PreEnqueue keeps a hopeless pod out of the active queue: it gets no
// scheduling attempt at all until a hint or the release path lets it back
// in. The scheduler writes no condition for such a pod, so the plugin
// does, once.
func (pl *HopelessPods) PreEnqueue(_ context.Context, pod *v1.Pod) *fwk.Status {
	if !pl.gateAtPreEnqueue {
		return nil
	}
	if pod.DeletionTimestamp != nil {
		// Let through: the scheduling cycle drops a pod being deleted
		// (skipPodSchedule), as it does without Ballast.
		pl.parking.unpark(pod.UID)
		return nil
	}
	judged := pl.verdicts.generations()
	v, key, ok := pl.verdicts.judge(pod)
	if !ok || !v.Hopeless {
		pl.parking.unpark(pod.UID)
		return nil
	}
	pl.parkJudged(pod, key, v, true, judged)
	return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, v.Message)
}

// PreFilter rejects a hopeless pod before any Filter runs. With narrowFilter
// it also restricts Filter to the nodes whose shape passes the pod's static
// predicates; that is off by default, because the nodes left out are then
// reported as "didn't satisfy plugin(s) [HopelessPods]" instead of their
// real reasons, and those are what a user debugging a pending pod needs.
func (pl *HopelessPods) PreFilter(_ context.Context, _ fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	judged := pl.verdicts.generations()
	v, key, ok := pl.verdicts.judge(pod)
	if !ok {
		return nil, nil
	}
	if v.Hopeless {
		pl.parkJudged(pod, key, v, false, judged)
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, v.Message)
	}
	pl.parking.unpark(pod.UID)
	if pl.narrowFilter && v.Nodes != nil {
		return &fwk.PreFilterResult{NodeNames: v.Nodes}, nil
	}
	return nil, nil
}

// PreFilterExtensions returns nil: the plugin keeps no per-cycle state.
func (pl *HopelessPods) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// parkJudged parks a pod judged against the store at generations judged.
// If the store moved on meanwhile, the release path's re-check may have
// run before the pod was in the lot and missed it: ask for another (of the
// pod's claims only, after a claim or PV change).
func (pl *HopelessPods) parkJudged(pod *v1.Pod, key verdictKey, v shapes.Verdict, gated bool, judged storeGenerations) {
	pl.parking.park(pod, key, v, gated)
	now := pl.verdicts.generations()
	if now.gen != judged.gen || now.memberGen != judged.memberGen {
		pl.recheck()
	}
	if now.volumes != judged.volumes && pl.recheckClaims != nil {
		// A claim or PV changed meanwhile: its handler may have looked
		// for this pod's claims before it was parked.
		pl.recheckClaims(claimKeys(pod))
	}
}
