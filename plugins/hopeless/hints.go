package hopeless

import (
	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/client-go/tools/cache"
	resourcehelper "k8s.io/component-helpers/resource"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	schedutil "k8s.io/kubernetes/pkg/scheduler/util"
	"k8s.io/utils/ptr"
)

// DRA: an extended resource that a DeviceClass maps (its
// spec.extendedResourceName or the implicit
// deviceclass.resource.kubernetes.io/<class>) is left to the scheduler on
// every node that does not advertise it, as NodeResourcesFit hands it to
// DynamicResources there. One that no node advertises, no template offers and
// no DeviceClass maps is hopeless; a DeviceClass appearing releases it.

// draEvents are the DRA events that can release a parked pod.
func (pl *HopelessPods) draEvents() []fwk.ClusterEventWithHint {
	return []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: fwk.DeviceClass, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: pl.isSchedulableAfterDeviceClassChange},
		// A ResourceSlice maps no resource name in v1.37.2, so it cannot change
		// a verdict; the hint re-checks pods that request DRA-able names, so a
		// pod parked against a store that lags the DeviceClass comes back.
		{Event: fwk.ClusterEvent{Resource: fwk.ResourceSlice, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: pl.isSchedulableAfterResourceSliceChange},
	}
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
	if v, ok := pl.verdict(pod); ok && v.Hopeless {
		return fwk.QueueSkip, nil
	}
	return fwk.Queue, nil
}

// watchDeviceClasses feeds the store from the DeviceClass informer and, when
// the mapped names change, activates the parked pods that it makes
// schedulable (the store-side release path, independent of the queue's
// listener order).
func (pl *HopelessPods) watchDeviceClasses(h fwk.Handle) (cache.InformerSynced, error) {
	inf := h.SharedInformerFactory().Resource().V1().DeviceClasses().Informer()
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { pl.deviceClassChanged(obj, false) },
		UpdateFunc: func(_, obj interface{}) { pl.deviceClassChanged(obj, false) },
		DeleteFunc: func(obj interface{}) { pl.deviceClassChanged(obj, true) },
	})
	if err != nil {
		return nil, err
	}
	return reg.HasSynced, nil
}

func (pl *HopelessPods) deviceClassChanged(obj interface{}, deleted bool) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	dc, ok := obj.(*resourceapi.DeviceClass)
	if !ok {
		return
	}
	var changed bool
	if deleted {
		changed = pl.store.DeleteDeviceClass(dc)
	} else {
		changed = pl.store.UpsertDeviceClass(dc)
	}
	if changed {
		// The re-check loop releases the signatures that now fit and
		// re-reports those whose reason changed (a class deleted).
		pl.requestRecheck()
	}
}
