package hopeless

import (
	"context"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	resourcehelper "k8s.io/component-helpers/resource"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	schedutil "k8s.io/kubernetes/pkg/scheduler/util"
	"k8s.io/utils/ptr"
)

// EventsToRegister lists the events that can make a parked pod schedulable
// and that only the queue sees. Node deletions and pod events of other pods
// never can: static predicates do not read other pods.
//
// Node events are not registered: every registered event makes the queue
// hand it to each parked pod in turn under its lock (4,000 hint calls for
// each node of a churning pool), although one verdict answers for all the
// pods of a verdict key. The release path (release.go) feeds the store and
// has the re-check loop activate the verdicts that now fit, after the store
// has the node: release does not depend on the order in which the informer
// hands the node to the queue and to the plugin.
func (pl *HopelessPods) EventsToRegister(_ context.Context) ([]fwk.ClusterEventWithHint, error) {
	events := []fwk.ClusterEventWithHint{
		// Every update of the pod itself that changes what the static
		// predicates read: tolerations added, requests resized down through
		// pods/resize (allowed for pending pods), gates lifted. A resize up
		// cannot release, but can change the reason the user reads.
		{Event: fwk.ClusterEvent{Resource: fwk.TargetPod, ActionType: fwk.UpdatePodToleration | fwk.UpdatePodScaleDown | fwk.UpdatePodScaleUp | fwk.UpdatePodSchedulingGatesEliminated | fwk.UpdatePodGeneratedResourceClaim}, QueueingHintFn: pl.isSchedulableAfterPodChange},
		// DRA: an extended resource that a DeviceClass maps (its
		// spec.extendedResourceName or the implicit
		// deviceclass.resource.kubernetes.io/<class>) is left to the scheduler
		// on every node that does not advertise it, as NodeResourcesFit hands
		// it to DynamicResources there. One that no node advertises, no
		// template offers and no DeviceClass maps is hopeless; a DeviceClass
		// appearing releases it.
		{Event: fwk.ClusterEvent{Resource: fwk.DeviceClass, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: pl.isSchedulableAfterDeviceClassChange},
		// A ResourceSlice maps no resource name in v1.37.2, so it cannot change
		// a verdict; the hint re-checks pods that request DRA-able names, so a
		// pod parked against a store that lags the DeviceClass comes back.
		{Event: fwk.ClusterEvent{Resource: fwk.ResourceSlice, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: pl.isSchedulableAfterResourceSliceChange},
		// Claims and volumes are not registered either: a cluster creates PVs
		// and claims by the thousand. The parking lot indexes parked pods by
		// claim and the release path activates just the pods of a claim or
		// volume that changed, as it does for node-group templates, which are
		// no framework event at all.
	}
	for i := range events {
		events[i].QueueingHintFn = queueDeleting(events[i].QueueingHintFn)
	}
	return events, nil
}

// queueDeleting wraps a hint to queue a pod being deleted, whatever the
// event: it is parked no more (informers.go), PreEnqueue lets it through
// and the cycle drops it, as kube-scheduler does without Ballast. The queue
// hands a hint its copy of the pod, updated before a pod-update hint runs.
func queueDeleting(hint fwk.QueueingHintFn) fwk.QueueingHintFn {
	return func(logger klog.Logger, pod *v1.Pod, oldObj, newObj interface{}) (fwk.QueueingHint, error) {
		if pod.DeletionTimestamp != nil {
			return fwk.Queue, nil
		}
		return hint(logger, pod, oldObj, newObj)
	}
}

// isSchedulableAfterPodChange queues the pod when its update makes it fit
// somewhere; when it does not, the parked pod is judged again so that its
// condition says the current reason.
func (pl *HopelessPods) isSchedulableAfterPodChange(_ klog.Logger, pod *v1.Pod, oldObj, newObj interface{}) (fwk.QueueingHint, error) {
	_, newPod, err := schedutil.As[*v1.Pod](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if newPod.UID != pod.UID {
		return fwk.QueueSkip, nil
	}
	judged := pl.verdicts.generations()
	v, key, ok := pl.verdicts.judge(newPod)
	if !ok || !v.Hopeless {
		return fwk.Queue, nil
	}
	if _, parked := pl.parking.lot.get(newPod.UID); parked {
		// A new reason gets the condition too, whoever wrote the old one.
		pl.parkJudged(newPod, key, v, true, judged)
	}
	return fwk.QueueSkip, nil
}

// isSchedulableAfterDeviceClassChange queues the pod when the class now maps
// a resource the pod requests and did not before. It reads the class, not
// the store: the queue may hand over the event before the store has it.
func (pl *HopelessPods) isSchedulableAfterDeviceClassChange(logger klog.Logger, pod *v1.Pod, oldObj, newObj interface{}) (fwk.QueueingHint, error) {
	oldClass, newClass, err := schedutil.As[*resourceapi.DeviceClass](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	reqs := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
	maps := func(dc *resourceapi.DeviceClass, name v1.ResourceName) bool {
		if dc == nil {
			return false
		}
		return name == v1.ResourceName(resourceapi.ResourceDeviceClassPrefix+dc.Name) ||
			(dc.Spec.ExtendedResourceName != nil && name == v1.ResourceName(ptr.Deref(dc.Spec.ExtendedResourceName, "")))
	}
	for name, q := range reqs {
		if q.IsZero() || !maps(newClass, name) || maps(oldClass, name) {
			continue
		}
		logger.V(4).Info("DeviceClass maps a resource a parked pod requests", "pod", klog.KObj(pod), "deviceClass", klog.KObj(newClass), "resource", name)
		return fwk.Queue, nil
	}
	return fwk.QueueSkip, nil
}

// isSchedulableAfterResourceSliceChange queues a pod that requests a
// DRA-able extended resource once its verdict is no longer hopeless.
func (pl *HopelessPods) isSchedulableAfterResourceSliceChange(_ klog.Logger, pod *v1.Pod, _, _ interface{}) (fwk.QueueingHint, error) {
	requestsDRAable := false
	for name, q := range resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{}) {
		if !q.IsZero() && schedutil.IsDRAExtendedResourceName(name) {
			requestsDRAable = true
			break
		}
	}
	if !requestsDRAable {
		return fwk.QueueSkip, nil
	}
	if v, _, ok := pl.verdicts.judge(pod); ok && v.Hopeless {
		return fwk.QueueSkip, nil
	}
	return fwk.Queue, nil
}
