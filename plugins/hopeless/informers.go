package hopeless

import (
	"context"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/ballast-k8s/ballast/config/v1alpha1"
)

// informerHandlers are the jobs the informers feed. Pods are seen only for
// their end: bound (the status writer yields to binds) or gone.
type informerHandlers struct {
	release   *releaser
	podBound  func()
	podGone   func(types.UID)
	templates *templateConfig // nil: the cluster does not autoscale
}

// informerWiring registers the plugin's handlers on the scheduler's shared
// informers (nodes, pods, claims, volumes, DeviceClasses) and on its own
// informer of the one node-group ConfigMap, and knows whether all of them
// have synced. It is the plugin's only contact with the API besides the
// status writer.
type informerWiring struct {
	hasSynced []cache.InformerSynced
}

// synced reports whether every handler has seen its informer's initial list.
func (w *informerWiring) synced() bool {
	for _, s := range w.hasSynced {
		if !s() {
			return false
		}
	}
	return true
}

// wire adds the handlers. dra: watch DeviceClasses. configMap: the
// node-group ConfigMap, when the cluster autoscales (its informer starts
// here; the scheduler starts the shared ones).
func (w *informerWiring) wire(ctx context.Context, factory informers.SharedInformerFactory, client kubernetes.Interface, dra bool, configMap v1alpha1.ConfigMapRef, h informerHandlers) error {
	add := func(inf cache.SharedIndexInformer, handler cache.ResourceEventHandler) error {
		reg, err := inf.AddEventHandler(handler)
		if err != nil {
			return err
		}
		w.hasSynced = append(w.hasSynced, reg.HasSynced)
		return nil
	}
	core := factory.Core().V1()
	if err := add(core.Nodes().Informer(), cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) {
			if n, ok := obj.(*v1.Node); ok {
				h.release.nodeChanged(nil, n)
			}
		},
		UpdateFunc: func(oldObj, obj interface{}) {
			old, _ := oldObj.(*v1.Node)
			if n, ok := obj.(*v1.Node); ok {
				h.release.nodeChanged(old, n)
			}
		},
		DeleteFunc: func(obj interface{}) {
			if n, ok := unwrapTombstone(obj).(*v1.Node); ok {
				h.release.nodeDeleted(n)
			}
		},
	}); err != nil {
		return err
	}
	if err := add(core.Pods().Informer(), cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, obj interface{}) {
			pod, ok := obj.(*v1.Pod)
			if !ok {
				return
			}
			old, _ := oldObj.(*v1.Pod)
			if old != nil && old.UID != pod.UID {
				// Deleted and re-created under its name while the watch
				// was down: the relist gives an update, no delete.
				h.podGone(old.UID)
			}
			if pod.Spec.NodeName == "" {
				if pod.DeletionTimestamp != nil {
					// Being deleted (a finalizer holds it): the scheduler
					// will not schedule it; it is parked no more.
					h.podGone(pod.UID)
				}
				return
			}
			if old != nil && old.Spec.NodeName == "" {
				h.podBound()
			}
			h.podGone(pod.UID)
		},
		DeleteFunc: func(obj interface{}) {
			if pod, ok := unwrapTombstone(obj).(*v1.Pod); ok {
				h.podGone(pod.UID)
			}
		},
	}); err != nil {
		return err
	}
	// A deleted claim changes its pods' verdicts too: VolumeBinding rejects
	// them for the missing claim, no longer for the PV's node affinity.
	claims := onAddOrUpdate(func(pvc *v1.PersistentVolumeClaim) { h.release.claimChanged(pvc, false) })
	claims.DeleteFunc = func(obj interface{}) {
		if pvc, ok := unwrapTombstone(obj).(*v1.PersistentVolumeClaim); ok {
			h.release.claimChanged(pvc, true)
		}
	}
	if err := add(core.PersistentVolumeClaims().Informer(), claims); err != nil {
		return err
	}
	// A deleted PV too: its claim's pods no longer carry its node affinity.
	// (volumeChanged finds the claims naming the PV, whatever its claimRef.)
	volumes := onAddOrUpdate(h.release.volumeChanged)
	volumes.DeleteFunc = func(obj interface{}) {
		if pv, ok := unwrapTombstone(obj).(*v1.PersistentVolume); ok {
			h.release.volumeChanged(pv)
		}
	}
	if err := add(core.PersistentVolumes().Informer(), volumes); err != nil {
		return err
	}
	if dra {
		// DeviceClasses decide extended resources (see hints.go).
		if err := add(factory.Resource().V1().DeviceClasses().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj interface{}) { deviceClassEvent(h.release, obj, false) },
			UpdateFunc: func(_, obj interface{}) { deviceClassEvent(h.release, obj, false) },
			DeleteFunc: func(obj interface{}) { deviceClassEvent(h.release, obj, true) },
		}); err != nil {
			return err
		}
	}
	if h.templates == nil {
		return nil
	}
	cmf := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithNamespace(configMap.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", configMap.Name).String()
		}))
	handler := onAddOrUpdate(h.templates.setConfigMap)
	handler.DeleteFunc = func(interface{}) { h.templates.deleted() }
	if err := add(cmf.Core().V1().ConfigMaps().Informer(), handler); err != nil {
		return err
	}
	cmf.Start(ctx.Done())
	return nil
}

// onAddOrUpdate calls f with the new object of every add and update of
// type T.
func onAddOrUpdate[T any](f func(T)) cache.ResourceEventHandlerFuncs {
	call := func(obj interface{}) {
		if o, ok := obj.(T); ok {
			f(o)
		}
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: call, UpdateFunc: func(_, obj interface{}) { call(obj) }}
}

func deviceClassEvent(r *releaser, obj interface{}, deleted bool) {
	if dc, ok := unwrapTombstone(obj).(*resourceapi.DeviceClass); ok {
		r.deviceClassChanged(dc, deleted)
	}
}

func unwrapTombstone(obj interface{}) interface{} {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return tomb.Obj
	}
	return obj
}
