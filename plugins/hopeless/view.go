package hopeless

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"maps"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/shapes"
)

// view feeds the shape store from informers and resolves a pod's bound
// volumes. It is the plugin's only contact with the API.
type view struct {
	pl        *HopelessPods
	handle    fwk.Handle
	podLister corelisters.PodLister
	volumes   shapes.VolumeLookup // claims and PVs, from the listers
	hasSynced []cache.InformerSynced

	reqs sync.Map // types.UID -> *reqEntry

	tmu       sync.Mutex
	templates *nodegroups.NodeGroupList
	tstate    shapes.TemplateState
}

type reqEntry struct {
	pod   *v1.Pod
	pvKey string
	req   *shapes.Requirements
	sig   uint64
}

func newView(ctx context.Context, pl *HopelessPods, h fwk.Handle) (*view, error) {
	f := h.SharedInformerFactory()
	v := &view{
		pl:        pl,
		handle:    h,
		podLister: f.Core().V1().Pods().Lister(),
	}
	pvcLister, pvLister := f.Core().V1().PersistentVolumeClaims().Lister(), f.Core().V1().PersistentVolumes().Lister()
	v.volumes = shapes.VolumeLookup{
		Claim: func(namespace, name string) (*v1.PersistentVolumeClaim, bool) {
			pvc, err := pvcLister.PersistentVolumeClaims(namespace).Get(name)
			return pvc, err == nil
		},
		PV: func(name string) (*v1.PersistentVolume, bool) {
			pv, err := pvLister.Get(name)
			return pv, err == nil
		},
	}
	nodes := f.Core().V1().Nodes().Informer()
	reg, err := nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { v.upsertNode(nil, obj) },
		UpdateFunc: v.upsertNode,
		DeleteFunc: v.deleteNode,
	})
	if err != nil {
		return nil, err
	}
	pods := f.Core().V1().Pods().Informer()
	podReg, err := pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, obj interface{}) {
			pod, ok := obj.(*v1.Pod)
			if !ok || pod.Spec.NodeName == "" {
				return
			}
			if old, ok := oldObj.(*v1.Pod); ok && old.Spec.NodeName == "" {
				v.pl.status.noteBind()
			}
			v.forgetPod(pod.UID)
		},
		DeleteFunc: func(obj interface{}) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if pod, ok := obj.(*v1.Pod); ok {
				v.forgetPod(pod.UID)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	claimReg, err := f.Core().V1().PersistentVolumeClaims().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { v.claimChanged(obj) },
		UpdateFunc: func(_, obj interface{}) { v.claimChanged(obj) },
	})
	if err != nil {
		return nil, err
	}
	volumeReg, err := f.Core().V1().PersistentVolumes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { v.volumeChanged(obj) },
		UpdateFunc: func(_, obj interface{}) { v.volumeChanged(obj) },
	})
	if err != nil {
		return nil, err
	}
	v.hasSynced = []cache.InformerSynced{reg.HasSynced, podReg.HasSynced, claimReg.HasSynced, volumeReg.HasSynced}

	if *pl.args.Autoscaling {
		ref := pl.args.NodeGroupsConfigMap
		cmf := informers.NewSharedInformerFactoryWithOptions(h.ClientSet(), 0,
			informers.WithNamespace(ref.Namespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", ref.Name).String()
			}))
		cms := cmf.Core().V1().ConfigMaps().Informer()
		cmReg, err := cms.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj interface{}) { v.setConfigMap(obj) },
			UpdateFunc: func(_, obj interface{}) { v.setConfigMap(obj) },
			DeleteFunc: func(interface{}) { v.setTemplates(nil, shapes.TemplatesMissing) },
		})
		if err != nil {
			return nil, err
		}
		v.hasSynced = append(v.hasSynced, cmReg.HasSynced)
		cmf.Start(ctx.Done())
		go v.watchStaleness(ctx)
	}
	return v, nil
}

func (v *view) synced() bool {
	for _, s := range v.hasSynced {
		if !s() {
			return false
		}
	}
	return true
}

// upsertNode feeds the store, and has the parked pods judged again when
// the node changed what the static predicates read.
func (v *view) upsertNode(oldObj, obj interface{}) {
	n, ok := obj.(*v1.Node)
	if !ok {
		return
	}
	v.pl.store.UpsertNode(n)
	if old, ok := oldObj.(*v1.Node); !ok || staticFieldsChanged(old, n) {
		v.pl.requestRecheck()
	}
}

func (v *view) deleteNode(obj interface{}) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if n, ok := obj.(*v1.Node); ok {
		v.pl.store.DeleteNode(n.Name)
		// A deletion releases nobody, but can change the reason.
		v.pl.requestRecheck()
	}
}

// staticFieldsChanged reports whether an update changed what a static
// predicate reads from a node (identity labels included).
func staticFieldsChanged(old, n *v1.Node) bool {
	return old.Spec.Unschedulable != n.Spec.Unschedulable ||
		!maps.Equal(old.Labels, n.Labels) ||
		!apiequality.Semantic.DeepEqual(old.Spec.Taints, n.Spec.Taints) ||
		!apiequality.Semantic.DeepEqual(old.Status.Allocatable, n.Status.Allocatable)
}

// currentPod returns the informer's copy of a pod, for the status writer's
// check that the pod is still unbound.
func (v *view) currentPod(_ context.Context, namespace, name string) (*v1.Pod, error) {
	return v.podLister.Pods(namespace).Get(name)
}

func (v *view) forgetPod(uid types.UID) {
	v.reqs.Delete(uid)
	v.pl.unpark(uid)
	// Only now may a new park of this pod be reported again.
	v.pl.status.forget(uid)
}

// setConfigMap decodes the node groups. A malformed ConfigMap is reported
// and ignored: the plugin fails open and parks nothing.
func (v *view) setConfigMap(obj interface{}) {
	cm, ok := obj.(*v1.ConfigMap)
	if !ok {
		return
	}
	list, err := nodegroups.Decode(cm.Data)
	if err != nil {
		klog.Background().Error(err, "Ignoring malformed node-group ConfigMap; parking nothing until it is fixed", "configMap", klog.KObj(cm))
		v.handle.EventRecorder().Eventf(cm, nil, v1.EventTypeWarning, "InvalidNodeGroups", "Validate", "%s: parking no pods until fixed: %v", Name, err)
		metricTemplateErrors.Inc()
		v.setTemplates(nil, shapes.TemplatesInvalid)
		return
	}
	v.setTemplates(list, v.stateOf(list))
}

func (v *view) stateOf(list *nodegroups.NodeGroupList) shapes.TemplateState {
	if list.Stale(v.pl.clock.Now(), v.pl.args.MaxTemplateAge.Duration) {
		return shapes.TemplatesStale
	}
	return shapes.TemplatesOK
}

func (v *view) setTemplates(list *nodegroups.NodeGroupList, state shapes.TemplateState) {
	v.tmu.Lock()
	v.templates, v.tstate = list, state
	v.tmu.Unlock()
	v.pl.store.SetTemplates(list, state)
	metricTemplateState.Set(templateStateValue(state))
	// Templates are no framework event: bring back the parked pods that the
	// new templates (or failing open) make schedulable.
	v.pl.requestRecheck()
}

// watchStaleness re-checks the templates' age, since nothing else happens
// when the balancer stops writing them.
func (v *view) watchStaleness(ctx context.Context) {
	period := v.pl.args.MaxTemplateAge.Duration / 4
	if period <= 0 || period > 30*time.Second {
		period = 30 * time.Second
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v.tmu.Lock()
		list, state := v.templates, v.tstate
		v.tmu.Unlock()
		if list == nil || (state != shapes.TemplatesOK && state != shapes.TemplatesStale) {
			continue
		}
		if now := v.stateOf(list); now != state {
			klog.Background().Info("Node-group templates changed freshness", "state", now)
			v.setTemplates(list, now)
		}
	}
}

// claimChanged brings back the parked pods of a claim that was created,
// rebound or changed (e.g. a claim of a lost local PV recreated by its
// StatefulSet), if it makes them schedulable.
func (v *view) claimChanged(obj interface{}) {
	if pvc, ok := obj.(*v1.PersistentVolumeClaim); ok {
		v.activate(v.pl.lot.ofClaim(pvc.Namespace + "/" + pvc.Name))
	}
}

// volumeChanged does the same for a PV bound to a claim of parked pods
// (its node affinity may have been fixed).
func (v *view) volumeChanged(obj interface{}) {
	if pv, ok := obj.(*v1.PersistentVolume); ok && pv.Spec.ClaimRef != nil {
		v.activate(v.pl.lot.ofClaim(pv.Spec.ClaimRef.Namespace + "/" + pv.Spec.ClaimRef.Name))
	}
}

// activate moves the parked pods that are no longer hopeless (or that the
// plugin can no longer judge) back to the active queue.
func (v *view) activate(parked []parkedPod) {
	if len(parked) == 0 || !v.synced() {
		return
	}
	pods := map[string]*v1.Pod{}
	for _, p := range parked {
		pod, err := v.podLister.Pods(p.pod.Namespace).Get(p.pod.Name)
		if err != nil || pod.UID != p.pod.UID {
			continue
		}
		if verdict, ok := v.pl.verdict(pod); !ok || !verdict.Hopeless {
			pods[p.key()] = pod
			v.pl.unpark(pod.UID)
		}
	}
	if len(pods) > 0 {
		klog.Background().V(2).Info("Activating parked pods that may have become schedulable", "count", len(pods))
		v.handle.Activate(klog.Background(), pods)
	}
}

// requirements returns the pod's parsed static predicates.
func (v *view) requirements(pod *v1.Pod) *shapes.Requirements {
	req, _ := v.requirementsAndSignature(pod)
	return req
}

// requirementsAndSignature returns the pod's parsed static predicates and a
// hash of exactly what they read, cached per pod object.
func (v *view) requirementsAndSignature(pod *v1.Pod) (*shapes.Requirements, uint64) {
	vols, pvKey := shapes.ResolveBoundVolumes(pod, v.volumes)
	if e, ok := v.reqs.Load(pod.UID); ok {
		if e := e.(*reqEntry); e.pod == pod && e.pvKey == pvKey {
			return e.req, e.sig
		}
	}
	e := &reqEntry{pod: pod, pvKey: pvKey}
	e.req = shapes.NewRequirements(pod, vols, v.pl.store.Options())
	e.sig = signature(pod, e.req, pvKey)
	v.reqs.Store(pod.UID, e)
	return e.req, e.sig
}

// signature hashes the fields the static predicates read, so that the pods
// of one CronJob share one verdict.
func signature(pod *v1.Pod, req *shapes.Requirements, pvKey string) uint64 {
	var required *v1.NodeSelector
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		required = a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	}
	in := struct {
		NodeSelector map[string]string
		Required     *v1.NodeSelector
		Tolerations  []v1.Toleration
		Requests     v1.ResourceList
		Volumes      string
	}{pod.Spec.NodeSelector, required, pod.Spec.Tolerations, req.Requests(), pvKey}
	b, err := json.Marshal(in)
	if err != nil {
		// Cannot happen for API types; a per-pod key keeps verdicts correct.
		b = []byte(pod.UID)
	}
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}
