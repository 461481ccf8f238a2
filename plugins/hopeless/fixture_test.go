package hopeless

// The package's test fixtures, in one place: node and pod builders
// (upstream's st.Make* style), the plugin as a plain struct for the hints
// and extension points, the plugin wired on a real framework handle over a
// fake clientset, and a wait for a condition.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/defaultbinder"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/queuesort"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/ballast-k8s/ballast/config/v1alpha1"
	"github.com/ballast-k8s/ballast/internal/shapes"
)

var (
	// batchTaint is the incident's taint: no cronPod tolerates it.
	batchTaint = v1.Taint{Key: "dedicated", Value: "batch", Effect: v1.TaintEffectNoSchedule}
	// batchjobsTaint is the taint cronPod tolerates.
	batchjobsTaint = v1.Taint{Key: "dedicated", Value: "batchjobs", Effect: v1.TaintEffectNoSchedule}
)

// releaseWithin is how soon a change that makes a parked pod placeable must
// bring it back (the queue's own flush would take five minutes).
const releaseWithin = time.Second

// makeNode starts a node of 4 CPUs, 16Gi and 110 pods, labelled with its
// hostname.
func makeNode(name string) *st.NodeWrapper {
	return st.MakeNode().Name(name).Label(v1.LabelHostname, name).
		Capacity(map[v1.ResourceName]string{v1.ResourceCPU: "4", v1.ResourceMemory: "16Gi", v1.ResourcePods: "110"})
}

// poolNode is a node of makeNode labelled pool=<pool>, with taints.
func poolNode(name, pool string, taints ...v1.Taint) *v1.Node {
	return makeNode(name).Label("pool", pool).Taints(taints).Obj()
}

// makePod starts a pod in namespace default whose UID is its name.
func makePod(name string) *st.PodWrapper {
	return st.MakePod().Namespace("default").Name(name).UID(name)
}

// cronPod is the incident's pod: pool=batch, tolerates dedicated=batchjobs.
func cronPod(name string) *v1.Pod {
	return makePod(name).NodeSelector(map[string]string{"pool": "batch"}).
		Tolerations([]v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "batchjobs", Effect: v1.TaintEffectNoSchedule}}).
		Req(map[v1.ResourceName]string{v1.ResourceCPU: "100m"}).Obj()
}

// bigPod requests cpu (a node of makeNode has 4) and carries the two
// NoExecute tolerations the DefaultTolerationSeconds admission adds.
func bigPod(name, cpu string) *v1.Pod {
	return makePod(name).Req(map[v1.ResourceName]string{v1.ResourceCPU: cpu}).
		Tolerations([]v1.Toleration{
			{Key: v1.TaintNodeNotReady, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
			{Key: v1.TaintNodeUnreachable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
		}).Obj()
}

// podWithClaim is a pod that mounts the claim.
func podWithClaim(name, claim string) *v1.Pod { return makePod(name).PVC(claim).Obj() }

// podOwnedBy is a cronPod with the owner references refs.
func podOwnedBy(name string, refs ...metav1.OwnerReference) *v1.Pod {
	p := cronPod(name)
	p.OwnerReferences = refs
	return p
}

// hopelessVerdict is a verdict as the store writes it, message prefix included.
func hopelessVerdict(reason shapes.Reason, why string) shapes.Verdict {
	return shapes.Verdict{Hopeless: true, Reason: reason, Message: shapes.MessagePrefix + why}
}

// waitFor waits up to within for cond, and fails the test with what when
// it does not hold by then.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, within, true, func(context.Context) (bool, error) {
		return cond(), nil
	}); err != nil {
		t.Fatalf("%s: not within %v", what, within)
	}
}

// recordingReporter records what the plugin reports, cancels and forgets.
type recordingReporter struct {
	mu        sync.Mutex
	reports   []report
	cancelled []types.UID
	forgotten []types.UID
}

type report struct {
	pod     string
	message string
	gated   bool
}

func (r *recordingReporter) report(pod *v1.Pod, message string, gated bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports = append(r.reports, report{pod.Name, message, gated})
}

func (r *recordingReporter) cancel(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancelled = append(r.cancelled, uid)
}

func (r *recordingReporter) forget(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forgotten = append(r.forgotten, uid)
}

// plainPlugin is the plugin as a plain struct over a store of nodes, as
// upstream tests its plugins on &TaintToleration{}: no framework, no API.
type plainPlugin struct {
	*HopelessPods
	store    *shapes.Store
	reporter *recordingReporter
	synced   bool
	rechecks int
}

func newPlainPlugin(nodes ...*v1.Node) *plainPlugin { return newPlainPluginOf(false, nodes...) }

// newPlainPluginOf is newPlainPlugin for a cluster that autoscales or
// not; one that does fails open until it has templates.
func newPlainPluginOf(autoscaling bool, nodes ...*v1.Node) *plainPlugin {
	opts := shapes.FeatureOptions(utilfeature.DefaultFeatureGate)
	opts.IdentityLabels = sets.New(v1.LabelHostname)
	p := &plainPlugin{store: shapes.NewStore(opts, autoscaling), reporter: &recordingReporter{}, synced: true}
	for _, n := range nodes {
		p.store.UpsertNode(n)
	}
	p.HopelessPods = &HopelessPods{
		gateAtPreEnqueue: true,
		verdicts:         newVerdictCache(p.store, noVolumes, func() bool { return p.synced }, clock.RealClock{}),
		parking:          &parker{lot: newParkingLot(), reporter: p.reporter},
		recheck:          func() { p.rechecks++ },
	}
	return p
}

// len returns the number of parked pods.
func (l *parkingLot) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pods)
}

// parked reports whether the pod is in the parking lot.
func (p *plainPlugin) parked(pod *v1.Pod) bool {
	_, ok := p.parking.lot.get(pod.UID)
	return ok
}

// testPlugin is the plugin wired by build on a real framework handle over
// a fake clientset, with its loops running and its informers synced.
type testPlugin struct {
	*components
	handle fwk.Handle
	client *fake.Clientset
	ctx    context.Context
}

func newTestPlugin(t testing.TB, rawArgs string, objs ...runtime.Object) *testPlugin {
	t.Helper()
	return newConfiguredTestPlugin(t, rawArgs, nil, objs...)
}

// testContext is a context with the test's logger, cancelled when the test
// ends.
func testContext(t testing.TB) context.Context {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	return ctx
}

// newConfiguredTestPlugin is newTestPlugin with configure run on the
// components after they are built and before their loops start (the loops
// read what it sets without a lock).
func newConfiguredTestPlugin(t testing.TB, rawArgs string, configure func(*components), objs ...runtime.Object) *testPlugin {
	t.Helper()
	return newTestPluginOn(t, fake.NewClientset(objs...), rawArgs, configure)
}

// newTestPluginOn is newConfiguredTestPlugin on client.
func newTestPluginOn(t testing.TB, client *fake.Clientset, rawArgs string, configure func(*components)) *testPlugin {
	t.Helper()
	schedmetrics.Register()
	ctx := testContext(t)
	factory := informers.NewSharedInformerFactory(client, 0)
	profile := &config.KubeSchedulerProfile{SchedulerName: "test", Plugins: &config.Plugins{
		QueueSort: config.PluginSet{Enabled: []config.Plugin{{Name: queuesort.Name}}},
		Bind:      config.PluginSet{Enabled: []config.Plugin{{Name: defaultbinder.Name}}},
	}}
	registry := frameworkruntime.Registry{queuesort.Name: queuesort.New, defaultbinder.Name: defaultbinder.New}
	fh, err := frameworkruntime.NewFramework(ctx, registry, profile,
		frameworkruntime.WithClientSet(client), frameworkruntime.WithInformerFactory(factory),
		frameworkruntime.WithEventRecorder(events.NewFakeRecorder(100)))
	if err != nil {
		t.Fatal(err)
	}
	// The scheduler's framework always has its queue as the activator
	// (scheduler.New); a test that looks at activations sets its own.
	fh.(interface{ SetPodActivator(fwk.PodActivator) }).SetPodActivator(&recordingActivator{})
	var obj runtime.Object
	if rawArgs != "" {
		obj = &runtime.Unknown{Raw: []byte(rawArgs), ContentType: runtime.ContentTypeJSON}
	}
	args, err := v1alpha1.DecodeHopelessPodsArgs(obj)
	if err != nil {
		t.Fatal(err)
	}
	c, err := build(ctx, args, fh, nil, nil, clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	if configure != nil {
		configure(c)
	}
	c.start(ctx)
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	waitFor(t, 10*time.Second, "the plugin's informers synced", c.informers.synced)
	return &testPlugin{components: c, handle: fh, client: client, ctx: ctx}
}

// setActivator has the handle hand activations to a.
func (f *testPlugin) setActivator(a fwk.PodActivator) {
	f.handle.(interface{ SetPodActivator(fwk.PodActivator) }).SetPodActivator(a)
}

// createPod creates pod and waits until the plugin's informer has it.
func (f *testPlugin) createPod(t testing.TB, pod *v1.Pod) {
	t.Helper()
	if _, err := f.client.CoreV1().Pods(pod.Namespace).Create(f.ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lister := f.handle.SharedInformerFactory().Core().V1().Pods().Lister()
	waitFor(t, 5*time.Second, "pod "+pod.Name+" reached the plugin's informer", func() bool {
		_, err := lister.Pods(pod.Namespace).Get(pod.Name)
		return err == nil
	})
}

// parkViaPreEnqueue creates pod and parks it, as the queue does on Add.
func (f *testPlugin) parkViaPreEnqueue(t testing.TB, pod *v1.Pod) {
	t.Helper()
	f.createPod(t, pod)
	if s := f.plugin.PreEnqueue(f.ctx, pod); s.Code() != fwk.UnschedulableAndUnresolvable {
		t.Fatalf("PreEnqueue of %s: %v, want it parked", pod.Name, s)
	}
}

// parked reports whether the pod is in the parking lot.
func (f *testPlugin) parked(pod *v1.Pod) bool {
	_, ok := f.plugin.parking.lot.get(pod.UID)
	return ok
}

// podCondition returns the pod's PodScheduled=False condition, nil if it
// has none (or is gone).
func (f *testPlugin) podCondition(name string) *v1.PodCondition {
	p, err := f.client.CoreV1().Pods("default").Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return podScheduledFalse(p)
}

func podScheduledFalse(p *v1.Pod) *v1.PodCondition {
	for i := range p.Status.Conditions {
		if c := &p.Status.Conditions[i]; c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse {
			return c
		}
	}
	return nil
}

// recordingActivator records what is activated.
type recordingActivator struct {
	mu  sync.Mutex
	got []string
}

func (r *recordingActivator) Activate(_ klog.Logger, pods map[string]*v1.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range pods {
		r.got = append(r.got, k)
	}
}

func (r *recordingActivator) activated() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]string(nil), r.got...)
	sort.Strings(out)
	return out
}

func (r *recordingActivator) has(key string) bool { return slices.Contains(r.activated(), key) }

// preEnqueueActivator does what the v1.37.2 queue does on Activate: it runs
// PreEnqueue on the activated pod (moveToActiveQ), and records whether the
// pod passed. An activation against a store that still lacks the node would
// park the pod again.
type preEnqueueActivator struct {
	pl     *HopelessPods
	mu     sync.Mutex
	passed []string
}

func (a *preEnqueueActivator) Activate(_ klog.Logger, pods map[string]*v1.Pod) {
	for key, pod := range pods {
		if a.pl.PreEnqueue(context.Background(), pod).IsSuccess() {
			a.mu.Lock()
			a.passed = append(a.passed, key)
			a.mu.Unlock()
		}
	}
}

func (a *preEnqueueActivator) released(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Contains(a.passed, key)
}

// volumeView is a claim and PV view the test changes as the PV
// controller and the informers would.
type volumeView struct {
	mu     sync.Mutex
	claims map[string]*v1.PersistentVolumeClaim // namespace/name
	pvs    map[string]*v1.PersistentVolume
}

func newVolumeView() *volumeView {
	return &volumeView{claims: map[string]*v1.PersistentVolumeClaim{}, pvs: map[string]*v1.PersistentVolume{}}
}

func (r *volumeView) lookup() shapes.VolumeLookup {
	return shapes.VolumeLookup{
		Claim: func(ns, name string) (*v1.PersistentVolumeClaim, bool) {
			r.mu.Lock()
			defer r.mu.Unlock()
			c, ok := r.claims[ns+"/"+name]
			return c, ok
		},
		PV: func(name string) (*v1.PersistentVolume, bool) {
			r.mu.Lock()
			defer r.mu.Unlock()
			p, ok := r.pvs[name]
			return p, ok
		},
	}
}

// bind has the PV controller bind claim to a zonal PV (an EBS volume of
// zone) and returns the bound claim.
func (r *volumeView) bind(claim, pvName, zone string) *v1.PersistentVolumeClaim {
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName, ResourceVersion: "7"},
		Spec: v1.PersistentVolumeSpec{
			Capacity: v1.ResourceList{v1.ResourceStorage: resource.MustParse("10Gi")},
			ClaimRef: &v1.ObjectReference{Namespace: "default", Name: claim},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelTopologyZone, Operator: v1.NodeSelectorOpIn, Values: []string{zone}}},
			}}}},
		},
		Status: v1.PersistentVolumeStatus{Phase: v1.VolumeBound},
	}
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: claim, Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
		Spec:       v1.PersistentVolumeClaimSpec{VolumeName: pvName},
		Status:     v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound},
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pvs[pvName] = pv
	r.claims["default/"+claim] = pvc
	return pvc
}

// hookReporter is a recordingReporter that starts during, once, the first
// time it is told to report a pod while armed: what another goroutine (an
// informer handler, the queue) does while the re-check is between its
// snapshot of a key's pods and its re-park of them. during runs on its own
// goroutine, as it would: the parker holds its lock while it reports, so
// what during does to the parker waits for this park to end (and may come
// before the re-park of the key's next pod, or after). wait waits for it.
type hookReporter struct {
	recordingReporter
	mu     sync.Mutex
	during func(reported *v1.Pod)
	done   chan struct{}
}

func (h *hookReporter) report(pod *v1.Pod, message string, gated bool) {
	h.recordingReporter.report(pod, message, gated)
	h.mu.Lock()
	f := h.during
	h.during = nil
	if f != nil {
		h.done = make(chan struct{})
		go func(done chan struct{}) {
			defer close(done)
			f(pod)
		}(h.done)
	}
	h.mu.Unlock()
}

// wait waits for the during started, if any.
func (h *hookReporter) wait() {
	h.mu.Lock()
	done := h.done
	h.mu.Unlock()
	if done != nil {
		<-done
	}
}

// noVolumes is a claim and PV view with no claims and no PVs.
var noVolumes = shapes.VolumeLookup{
	Claim: func(string, string) (*v1.PersistentVolumeClaim, bool) { return nil, false },
	PV:    func(string) (*v1.PersistentVolume, bool) { return nil, false },
}

// releaseRig is the release path (verdict cache, parking lot, releaser)
// over a store of nodes and a volume view, with a pod lister the test
// fills (indexer), the plugin's PreEnqueue parking in its lot, and the
// test's logger and context.
type releaseRig struct {
	store     *shapes.Store
	verdicts  *verdictCache
	reporter  *hookReporter
	parking   *parker
	activator *recordingActivator
	release   *releaser
	pl        *HopelessPods
	indexer   cache.Indexer
	logger    klog.Logger
	ctx       context.Context
}

func newReleaseRig(t *testing.T, volumes shapes.VolumeLookup, nodes ...*v1.Node) *releaseRig {
	t.Helper()
	opts := shapes.FeatureOptions(utilfeature.DefaultFeatureGate)
	opts.IdentityLabels = sets.New(v1.LabelHostname)
	f := &releaseRig{store: shapes.NewStore(opts, false), reporter: &hookReporter{}, activator: &recordingActivator{}}
	for _, n := range nodes {
		f.store.UpsertNode(n)
	}
	f.verdicts = newVerdictCache(f.store, volumes, func() bool { return true }, clock.RealClock{})
	f.parking = &parker{lot: newParkingLot(), reporter: f.reporter}
	f.logger, f.ctx = ktesting.NewTestContext(t)
	f.indexer = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	f.release = newReleaser(f.store, f.verdicts, f.parking, f.activator, corelisters.NewPodLister(f.indexer), func() bool { return true }, f.logger)
	f.pl = &HopelessPods{gateAtPreEnqueue: true, verdicts: f.verdicts, parking: f.parking, recheck: f.release.requestRecheck, recheckClaims: f.release.recheckClaims}
	return f
}

// park runs PreEnqueue on each pod, as the queue does on Add, and fails
// the test unless it parks it.
func (f *releaseRig) park(t *testing.T, pods ...*v1.Pod) {
	t.Helper()
	for _, p := range pods {
		if s := f.pl.PreEnqueue(f.ctx, p); s.Code() != fwk.UnschedulableAndUnresolvable {
			t.Fatalf("setup: PreEnqueue of %s: %v, want parked", p.Name, s)
		}
	}
}

// createAndPark adds each pod to the pod lister (the informer has it) and
// then parks it.
func (f *releaseRig) createAndPark(t *testing.T, pods ...*v1.Pod) {
	t.Helper()
	for _, p := range pods {
		if err := f.indexer.Add(p); err != nil {
			t.Fatal(err)
		}
		f.park(t, p)
	}
}

// dbPods are n pods of a StatefulSet db: db-<i> selects pool=db and mounts
// the claim data-db-<i>.
func dbPods(n int) []*v1.Pod {
	var pods []*v1.Pod
	for i := range n {
		pods = append(pods, makePod(fmt.Sprintf("db-%d", i)).NodeSelector(map[string]string{"pool": "db"}).PVC(fmt.Sprintf("data-db-%d", i)).Obj())
	}
	return pods
}

// newDBRig is the release path over one pool=web node of zone-a and
// volumes the test binds, with n pods of dbPods created and parked (no
// node has pool=db yet).
func newDBRig(t *testing.T, n int) (*releaseRig, *volumeView, []*v1.Pod) {
	t.Helper()
	vols := newVolumeView()
	f := newReleaseRig(t, vols.lookup(), makeNode("web-1").Label("pool", "web").Label(v1.LabelTopologyZone, "zone-a").Obj())
	pods := dbPods(n)
	f.createAndPark(t, pods...)
	return f, vols, pods
}

// evaluationCounter counts the verdicts the release path has the store
// evaluate: each costs a check of every node.
type evaluationCounter struct {
	*shapes.Store
	evaluations int
}

func (c *evaluationCounter) Evaluate(r *shapes.Requirements) shapes.Verdict {
	c.evaluations++
	return c.Store.Evaluate(r)
}

// hookedStore runs hooks[i] at the i-th NodeChangesMatter call, before
// (or, with after, once the weighing decided the change matters) weighing.
type hookedStore struct {
	*shapes.Store
	calls   int
	before  map[int]func()
	onMatch func() // once, after a weighing that said "matters"
}

func (h *hookedStore) NodeChangesMatter(r *shapes.Requirements, reason shapes.Reason, changes []shapes.NodeChange) bool {
	h.calls++
	if f := h.before[h.calls]; f != nil {
		f()
	}
	m := h.Store.NodeChangesMatter(r, reason, changes)
	if m && h.onMatch != nil {
		f := h.onMatch
		h.onMatch = nil
		f()
	}
	return m
}

// rvRig is the release path over parked local-PV pods: the releaser weighs
// node changes on hooked, the verdict cache evaluates on counted.
type rvRig struct {
	store    *shapes.Store
	hooked   *hookedStore
	counted  *evaluationCounter
	verdicts *verdictCache
	parking  *parker
	release  *releaser
	act      *recordingActivator
	pods     []*v1.Pod
}

// newRvRig parks n pods, pod i bound to a local PV pinned to gone-i, with
// sel as node selector.
func newRvRig(t *testing.T, n int, sel map[string]string, nodes ...*v1.Node) *rvRig {
	t.Helper()
	opts := shapes.FeatureOptions(utilfeature.DefaultFeatureGate)
	opts.IdentityLabels = sets.New(v1.LabelHostname)
	store := shapes.NewStore(opts, false)
	for _, node := range nodes {
		store.UpsertNode(node)
	}
	pvs := map[string]*v1.PersistentVolume{}
	claims := map[string]*v1.PersistentVolumeClaim{}
	for i := range n {
		pv := localPV(fmt.Sprintf("pv-%d", i), fmt.Sprintf("data-%d", i), fmt.Sprintf("gone-%d", i))
		pvs[pv.Name] = pv
		claims[pv.Spec.ClaimRef.Name] = &v1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: pv.Spec.ClaimRef.Name, Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
			Spec:       v1.PersistentVolumeClaimSpec{VolumeName: pv.Name}, Status: v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound}}
	}
	volumes := shapes.VolumeLookup{
		Claim: func(ns, name string) (*v1.PersistentVolumeClaim, bool) {
			c, ok := claims[name]
			return c, ok && ns == "default"
		},
		PV: func(name string) (*v1.PersistentVolume, bool) { pv, ok := pvs[name]; return pv, ok },
	}
	g := &rvRig{store: store, hooked: &hookedStore{Store: store, before: map[int]func(){}}, counted: &evaluationCounter{Store: store}, act: &recordingActivator{}}
	g.verdicts = newVerdictCache(g.counted, volumes, func() bool { return true }, clock.RealClock{})
	g.parking = &parker{lot: newParkingLot(), reporter: &recordingReporter{}}
	logger, _ := ktesting.NewTestContext(t)
	g.release = newReleaser(g.hooked, g.verdicts, g.parking, g.act, nil, func() bool { return true }, logger)
	for i := range n {
		w := makePod(fmt.Sprintf("db-%d", i)).PVC(fmt.Sprintf("data-%d", i))
		if sel != nil {
			w = w.NodeSelector(sel)
		}
		pod := w.Obj()
		v, key, ok := g.verdicts.judge(pod)
		if !ok || !v.Hopeless {
			t.Fatalf("setup: %s verdict %+v ok=%v", pod.Name, v, ok)
		}
		g.parking.park(pod, key, v, true)
		g.pods = append(g.pods, pod)
	}
	return g
}

// drain runs re-checks while one is due; it returns how many ran.
func (g *rvRig) drain(t *testing.T, limit int) int {
	logger, _ := ktesting.NewTestContext(t)
	for i := 0; i < limit; i++ {
		select {
		case <-g.release.recheck:
			g.release.recheckParked(logger)
		default:
			return i
		}
	}
	t.Fatalf("re-checks still due after %d", limit)
	return limit
}

func zoneNode(name, zone string) *v1.Node {
	return makeNode(name).Label(v1.LabelTopologyZone, zone).Obj()
}

// churnUntilReleased runs re-checks, each with a new node of a churning
// pool registering while it weighs, until pod is released or limit
// re-checks ran; it returns how many ran.
func (g *rvRig) churnUntilReleased(t *testing.T, pod *v1.Pod, limit int) int {
	logger, _ := ktesting.NewTestContext(t)
	rounds := 0
	for ; rounds < limit; rounds++ {
		if _, ok := g.parking.lot.get(pod.UID); !ok {
			break
		}
		g.hooked.calls = 0
		i := rounds
		g.hooked.before = map[int]func(){1: func() { g.release.nodeChanged(nil, makeNode(fmt.Sprintf("churn-%d", i)).Obj()) }}
		<-g.release.recheck
		g.release.recheckParked(logger)
	}
	return rounds
}

// waitWithin waits for wg, failing the test with msg after d.
func waitWithin(t *testing.T, wg *sync.WaitGroup, d time.Duration, msg string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatal(msg)
	}
}
