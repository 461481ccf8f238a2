package hopeless

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/events"
	"k8s.io/component-base/metrics/legacyregistry"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

const taintMessage = shapes.MessagePrefix + "no node or node group tolerates taint dedicated=batch:NoSchedule (pod tolerates dedicated=batchjobs:NoSchedule)"

// controllerRef is a controller reference whose UID derives from kind and name.
func controllerRef(apiVersion, kind, name string) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID(kind + "-" + name), Controller: ptr.To(true)}
}

// wantOwner is the owner the plugin resolves for the object of
// controllerRef(apiVersion, kind, name) in namespace default.
func wantOwner(apiVersion, kind, name string) *owner {
	return &owner{APIVersion: apiVersion, Kind: kind, Namespace: "default", Name: name, UID: types.UID(kind + "-" + name)}
}

// cronJobChain returns n Jobs of CronJob cron and one pod of each, as the
// CronJob controller makes them.
func cronJobChain(cron string, n int) (jobs []runtime.Object, pods []*v1.Pod) {
	cronRef := controllerRef("batch/v1", "CronJob", cron)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-%d", cron, 29000000+i)
		jobs = append(jobs, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID("Job-" + name),
			OwnerReferences: []metav1.OwnerReference{cronRef}}})
		pods = append(pods, podOwnedBy(name+"-x", controllerRef("batch/v1", "Job", name)))
	}
	return jobs, pods
}

// ownerFixture is an ownerReport over a fake clientset, a fake metadata
// client (which serves the Jobs of objs, as the apiserver's metadata view
// does) and a fake clock.
type ownerFixture struct {
	*ownerReport
	client *fake.Clientset
	meta   *metadatafake.FakeMetadataClient
	clock  *testingclock.FakeClock
	ctx    context.Context
}

// jobMetadata is what the apiserver serves of a Job to a metadata client.
func jobMetadata(objs []runtime.Object) []runtime.Object {
	var out []runtime.Object
	for _, o := range objs {
		if j, ok := o.(*batchv1.Job); ok {
			out = append(out, &metav1.PartialObjectMetadata{
				TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"}, ObjectMeta: *j.ObjectMeta.DeepCopy()})
		}
	}
	return out
}

func newOwnerFixture(t *testing.T, objs ...runtime.Object) *ownerFixture {
	t.Helper()
	registerMetrics()
	ctx := testContext(t)
	client := fake.NewClientset(objs...)
	f := informers.NewSharedInformerFactory(client, 0)
	clk := testingclock.NewFakeClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	scheme := runtime.NewScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	meta := metadatafake.NewSimpleMetadataClient(scheme, jobMetadata(objs)...)
	r := newOwnerReport(client, meta, f, clk)
	ownerMetrics.add(r)
	t.Cleanup(func() { ownerMetrics.remove(r) })
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	return &ownerFixture{ownerReport: r, client: client, meta: meta, clock: clk, ctx: ctx}
}

// events returns the core/v1 events in the fake clientset.
func (f *ownerFixture) events(t *testing.T) []v1.Event {
	t.Helper()
	evs, err := f.client.CoreV1().Events(metav1.NamespaceAll).List(f.ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return evs.Items
}

// writes counts the event creates and patches sent so far.
func (f *ownerFixture) writes() (creates, patches int) {
	for _, a := range f.client.Actions() {
		if a.GetResource().Resource != "events" {
			continue
		}
		switch a.GetVerb() {
		case "create":
			creates++
		case "patch":
			patches++
		}
	}
	return creates, patches
}

// gets counts the GETs of Jobs sent so far, by either client.
func (f *ownerFixture) gets() int {
	n := 0
	for _, a := range append(f.client.Actions(), f.meta.Actions()...) {
		if a.GetVerb() == "get" && a.GetResource().Resource == "jobs" {
			n++
		}
	}
	return n
}

// jobRequests counts the requests for Jobs by verb, by either client.
func (f *ownerFixture) jobRequests() map[string]int {
	out := map[string]int{}
	for _, a := range append(f.client.Actions(), f.meta.Actions()...) {
		if a.GetResource().Resource == "jobs" {
			out[a.GetVerb()]++
		}
	}
	return out
}

// settle runs standby rounds, a second of the fake clock apart, until no
// pod waits for its owner.
func (f *ownerFixture) settle(t *testing.T) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(f.ctx, time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		f.round(f.ctx, false)
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.pending) == 0 {
			return true, nil
		}
		f.clock.Step(ownerRound)
		return false, nil
	}); err != nil {
		f.mu.Lock()
		defer f.mu.Unlock()
		t.Fatalf("%d pods still wait for their owner: %v", len(f.pending), err)
	}
}

func (f *ownerFixture) ownerOfPod(uid types.UID) *owner {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pods[uid].owner
}

func TestOwnerResolution(t *testing.T) {
	deployRef := controllerRef("apps/v1", "Deployment", "web")
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-5d8f", UID: "ReplicaSet-web-5d8f", OwnerReferences: []metav1.OwnerReference{deployRef}}}
	loneRS := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "lone", UID: "ReplicaSet-lone"}}
	jobs, cronPods := cronJobChain("report", 1)
	plainJob := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "once", UID: "Job-once"}}
	// A non-controller reference (e.g. a garbage-collection owner) is not a controller.
	notController := metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "cm", UID: "cm"}

	tests := []struct {
		name      string
		pod       *v1.Pod
		wantOwned bool
		want      *owner
	}{
		{"bare pod", cronPod("bare"), false, nil},
		{"only a non-controller reference", podOwnedBy("gc", notController), false, nil},
		{"ReplicaSet of a Deployment", podOwnedBy("web-1", controllerRef("apps/v1", "ReplicaSet", "web-5d8f")), true, wantOwner("apps/v1", "Deployment", "web")},
		{"ReplicaSet without a controller", podOwnedBy("lone-1", controllerRef("apps/v1", "ReplicaSet", "lone")), true, wantOwner("apps/v1", "ReplicaSet", "lone")},
		{"ReplicaSet gone", podOwnedBy("gone-1", controllerRef("apps/v1", "ReplicaSet", "gone")), true, wantOwner("apps/v1", "ReplicaSet", "gone")},
		{"Job of a CronJob", cronPods[0], true, wantOwner("batch/v1", "CronJob", "report")},
		{"Job without a controller", podOwnedBy("once-1", controllerRef("batch/v1", "Job", "once")), true, wantOwner("batch/v1", "Job", "once")},
		{"Job gone", podOwnedBy("nojob-1", controllerRef("batch/v1", "Job", "nojob")), true, wantOwner("batch/v1", "Job", "nojob")},
		{"StatefulSet", podOwnedBy("db-0", controllerRef("apps/v1", "StatefulSet", "db")), true, wantOwner("apps/v1", "StatefulSet", "db")},
		{"DaemonSet", podOwnedBy("agent-x", controllerRef("apps/v1", "DaemonSet", "agent")), true, wantOwner("apps/v1", "DaemonSet", "agent")},
		{"custom controller", podOwnedBy("wf-1", controllerRef("argoproj.io/v1alpha1", "Workflow", "nightly")), true, wantOwner("argoproj.io/v1alpha1", "Workflow", "nightly")},
	}
	f := newOwnerFixture(t, append(jobs, rs, loneRS, plainJob)...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := f.park(tt.pod, taintMessage); got != tt.wantOwned {
				t.Fatalf("park says owned=%v, want %v", got, tt.wantOwned)
			}
			f.settle(t)
			if diff := cmp.Diff(tt.want, f.ownerOfPod(tt.pod.UID)); diff != "" {
				t.Errorf("owner (-want, +got):\n%s", diff)
			}
		})
	}
	// Jobs come from one list and watch, however many of their pods park;
	// no Job is read by itself.
	f.park(podOwnedBy("once-2", controllerRef("batch/v1", "Job", "once")), taintMessage)
	f.settle(t)
	if diff := cmp.Diff(map[string]int{"list": 1, "watch": 1}, f.jobRequests()); diff != "" {
		t.Errorf("requests for Jobs by verb (-want, +got):\n%s", diff)
	}
}

// The Job informer starts with the first Job-owned pod, not before: a
// scheduler whose parked pods come from no Job holds no Job. A Job that
// arrives after its pod resolves the pod when the informer delivers it; a
// Job that never comes is the pod's owner after ownerJobWait.
func TestJobInformerLazy(t *testing.T) {
	f := newOwnerFixture(t)
	f.park(podOwnedBy("db-0", controllerRef("apps/v1", "StatefulSet", "db")), taintMessage)
	f.settle(t)
	if n := len(f.jobRequests()); n != 0 {
		t.Fatalf("requests for Jobs without a Job-owned pod: %v", f.jobRequests())
	}

	jobs, pods := cronJobChain("late", 1)
	f.park(pods[0], taintMessage)
	late := podOwnedBy("never-1", controllerRef("batch/v1", "Job", "never"))
	f.park(late, taintMessage)
	f.round(f.ctx, false)
	if err := wait.PollUntilContextTimeout(f.ctx, time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return f.jobsSynced != nil && f.jobsSynced(), nil
	}); err != nil {
		t.Fatalf("the Job informer did not sync: %v", err)
	}
	if o := f.ownerOfPod(pods[0].UID); o != nil {
		t.Fatalf("pod of a Job not yet created reported on %+v", o)
	}
	// The Job's watch event comes after its pod's: the pod waits, no round
	// needed.
	if _, err := f.meta.Resource(jobsResource).Namespace("default").(metadatafake.MetadataClient).CreateFake(
		jobMetadata(jobs)[0].(*metav1.PartialObjectMetadata), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cron := owner{APIVersion: "batch/v1", Kind: "CronJob", Namespace: "default", Name: "late", UID: "CronJob-late"}
	if err := wait.PollUntilContextTimeout(f.ctx, time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		o := f.ownerOfPod(pods[0].UID)
		return o != nil && *o == cron, nil
	}); err != nil {
		t.Errorf("pod of a late Job reported on %+v, want its CronJob", f.ownerOfPod(pods[0].UID))
	}
	// The Job that never comes: its pod waits ownerJobWait, then is
	// reported on the Job.
	f.clock.Step(ownerJobWait - ownerRound)
	f.round(f.ctx, false)
	if o := f.ownerOfPod(late.UID); o != nil {
		t.Errorf("pod reported on %+v before ownerJobWait", o)
	}
	f.clock.Step(ownerRound)
	f.round(f.ctx, false)
	if o := f.ownerOfPod(late.UID); o == nil || o.Kind != "Job" || o.Name != "never" {
		t.Errorf("pod of a Job never seen reported on %+v after ownerJobWait, want its Job", o)
	}
	if gets := f.gets(); gets != 0 {
		t.Errorf("%d GETs of Jobs, want none", gets)
	}
}

// Without RBAC to list and watch Jobs the pods are reported on their Job
// (the informer keeps retrying, with its backoff), not left uncounted.
func TestOwnerLookupForbidden(t *testing.T) {
	jobs, pods := cronJobChain("report", 5)
	f := newOwnerFixture(t, jobs...)
	f.meta.PrependReactor("list", "jobs", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "batch", Resource: "jobs"}, "", fmt.Errorf("RBAC"))
	})
	for _, p := range pods {
		f.park(p, taintMessage)
	}
	f.settle(t)
	for _, p := range pods {
		if o := f.ownerOfPod(p.UID); o == nil || o.Kind != "Job" {
			t.Errorf("pod %s reported on %+v, want its Job", p.Name, o)
		}
	}
	if gets := f.gets(); gets != 0 {
		t.Errorf("%d GETs of Jobs after a 403, want none", gets)
	}
}

// One event per owner and message, updated as the count changes, at most
// every ownerUpdateInterval; standbys write none.
func TestOwnerEventAggregates(t *testing.T) {
	jobs, pods := cronJobChain("report", 5)
	f := newOwnerFixture(t, jobs...)
	for _, p := range pods[:3] {
		f.park(p, taintMessage)
	}
	// A standby counts, writes nothing, and keeps what left for
	// ownerStandbyKeep (the leader may die before it says so).
	other := podOwnedBy("other-1", controllerRef("apps/v1", "StatefulSet", "db"))
	f.park(other, taintMessage)
	f.remove(other.UID)
	f.settle(t)
	if c, p := f.writes(); c+p != 0 {
		t.Fatalf("a standby wrote %d events", c+p)
	}
	f.mu.Lock()
	kept := len(f.groups)
	f.mu.Unlock()
	if kept != 2 {
		t.Errorf("a standby keeps %d owners, want 2 (the StatefulSet's pod left just now)", kept)
	}
	// Leading, it tells the StatefulSet's event, if the previous leader
	// wrote one, that no pod is parked: there is none (one patch, NotFound),
	// and the owner is forgotten.
	f.round(f.ctx, true)
	f.mu.Lock()
	kept = len(f.groups)
	f.mu.Unlock()
	if kept != 1 {
		t.Errorf("the leader keeps %d owners, want 1", kept)
	}
	evs := f.events(t)
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1: %+v", len(evs), evs)
	}
	e := evs[0]
	want := "3 pods of this CronJob are parked: no node or node group tolerates taint dedicated=batch:NoSchedule (pod tolerates dedicated=batchjobs:NoSchedule)"
	if e.Message != want || e.InvolvedObject.Kind != "CronJob" || e.InvolvedObject.Name != "report" || e.InvolvedObject.UID != "CronJob-report" ||
		e.Reason != OwnerEventReason || e.Type != v1.EventTypeWarning || e.Count != 3 || e.Namespace != "default" {
		t.Errorf("event %+v\nwant on CronJob report: %q", e, want)
	}

	// More pods park; the event waits for the update interval.
	for _, p := range pods[3:] {
		f.park(p, taintMessage)
	}
	f.clock.Step(ownerUpdateInterval / 2)
	f.round(f.ctx, true)
	if c, p := f.writes(); c != 1 || p != 1 {
		t.Errorf("%d creates and %d patches within the update interval, want 1 and 1", c, p)
	}
	f.clock.Step(ownerUpdateInterval / 2)
	f.round(f.ctx, true)
	f.round(f.ctx, true)
	if c, p := f.writes(); c != 1 || p != 2 {
		t.Errorf("%d creates and %d patches, want 1 and 2", c, p)
	}
	if e := f.events(t)[0]; !strings.HasPrefix(e.Message, "5 pods of this CronJob are parked: ") || e.Count != 5 {
		t.Errorf("after 2 more pods: %q x%d", e.Message, e.Count)
	}

	// Unchanged: no write until the refresh that keeps the event from
	// expiring.
	f.clock.Step(ownerUpdateInterval)
	f.round(f.ctx, true)
	if _, p := f.writes(); p != 2 {
		t.Errorf("%d patches of an unchanged event, want 2", p)
	}
	f.clock.Step(ownerRefreshInterval)
	f.round(f.ctx, true)
	if _, p := f.writes(); p != 3 {
		t.Errorf("%d patches after the refresh interval, want 3", p)
	}

	// All released: the event says so, then the report forgets the owner.
	for _, p := range pods {
		f.remove(p.UID)
	}
	f.clock.Step(ownerUpdateInterval)
	f.round(f.ctx, true)
	e = f.events(t)[0]
	if e.Type != v1.EventTypeNormal || !strings.HasPrefix(e.Message, "No pods of this CronJob are parked any more (they were: no node or node group tolerates") {
		t.Errorf("after release: %s %q", e.Type, e.Message)
	}
	f.mu.Lock()
	groups := len(f.groups)
	f.mu.Unlock()
	if groups != 0 {
		t.Errorf("%d groups left after release", groups)
	}
}

// An event that expired (the apiserver's event TTL) is created again; one
// written by a previous leader is taken over.
func TestOwnerEventRecreated(t *testing.T) {
	jobs, pods := cronJobChain("report", 2)
	f := newOwnerFixture(t, jobs...)
	f.park(pods[0], taintMessage)
	f.settle(t)
	f.round(f.ctx, true)
	evs := f.events(t)
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	if err := f.client.CoreV1().Events("default").Delete(f.ctx, evs[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.park(pods[1], taintMessage)
	f.clock.Step(ownerUpdateInterval)
	f.round(f.ctx, true)
	if evs := f.events(t); len(evs) != 1 || !strings.HasPrefix(evs[0].Message, "2 pods of this CronJob") {
		t.Fatalf("after expiry: %+v", evs)
	}

	// A new leader (a fresh report) finds the event there and patches it.
	g := newOwnerFixture(t, jobs...)
	g.client = f.client
	g.ownerReport.client = f.client
	g.park(pods[0], taintMessage)
	g.settle(t)
	g.round(g.ctx, true)
	if evs := f.events(t); len(evs) != 1 || !strings.HasPrefix(evs[0].Message, "1 pod of this CronJob is parked") {
		t.Fatalf("after a new leader: %+v", evs)
	}
}

// The owner metrics stay bounded: at most maxOwnerNamespaces namespaces and
// the known kinds, the rest folded into _other and other.
func TestOwnerMetricsBounded(t *testing.T) {
	f := newOwnerFixture(t)
	n := 0
	for i := 0; i < maxOwnerNamespaces+5; i++ {
		ns := fmt.Sprintf("team-%02d", i)
		// Namespace i has i+1 pods of one StatefulSet and one bare pod.
		for j := 0; j <= i; j++ {
			p := podOwnedBy(fmt.Sprintf("%s-db-%d", ns, j), controllerRef("apps/v1", "StatefulSet", "db"))
			p.Namespace, p.UID = ns, types.UID(p.Name)
			p.OwnerReferences[0].UID = types.UID(ns + "-db")
			f.park(p, taintMessage)
			n++
		}
		bare := cronPod(ns + "-bare")
		bare.Namespace = ns
		f.park(bare, taintMessage)
		n++
	}
	wf := podOwnedBy("wf", controllerRef("argoproj.io/v1alpha1", "Workflow", "nightly"))
	wf.Namespace = "team-24"
	f.park(wf, taintMessage)
	n++
	f.round(f.ctx, false)

	series := gatherOwnerSeries(t, "ballast_hopeless_owner_parked_pods")
	sum := 0.0
	namespaces := map[string]bool{}
	for k, v := range series {
		sum += v
		namespaces[k[1]] = true
	}
	if int(sum) != n {
		t.Errorf("the owner metric sums to %v, want the %d parked pods", sum, n)
	}
	if len(namespaces) != maxOwnerNamespaces+1 || !namespaces[otherNamespace] || namespaces["team-00"] {
		t.Errorf("namespaces with series: %v; want the %d largest and %s", namespaces, maxOwnerNamespaces, otherNamespace)
	}
	// The largest pile-up from one owner: the StatefulSet of team-24 (25 pods).
	if v := gatherOwnerSeries(t, "ballast_hopeless_owner_max_parked_pods")[[2]string{"StatefulSet", "team-24"}]; v != 25 {
		t.Errorf("owner_max_parked_pods{StatefulSet,team-24} = %v, want 25", v)
	}
	if v := series[[2]string{ownerKindOther, "team-24"}]; v != 1 {
		t.Errorf("the Workflow's pod: owner_parked_pods{other,team-24} = %v, want 1", v)
	}
	// Released: the series go away.
	f.mu.Lock()
	uids := make([]types.UID, 0, len(f.pods))
	for uid := range f.pods {
		uids = append(uids, uid)
	}
	f.mu.Unlock()
	for _, uid := range uids {
		f.remove(uid)
	}
	f.round(f.ctx, false)
	if left := gatherOwnerSeries(t, "ballast_hopeless_owner_parked_pods"); len(left) != 0 {
		t.Errorf("series left after every pod was released: %v", left)
	}
}

// gatherOwnerSeries reads an owner metric from the registry: value by (owner_kind, namespace).
func gatherOwnerSeries(t *testing.T, name string) map[[2]string]float64 {
	t.Helper()
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[[2]string]float64{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var k [2]string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "owner_kind":
					k[0] = l.GetValue()
				case "namespace":
					k[1] = l.GetValue()
				}
			}
			out[k] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestOwnerNote(t *testing.T) {
	for _, tt := range []struct {
		count int
		want  string
	}{
		{1, "1 pod of this CronJob is parked: no node"},
		{3912, "3,912 pods of this CronJob are parked: no node"},
		{1234567, "1,234,567 pods of this CronJob are parked: no node"},
		{0, "No pods of this CronJob are parked any more (they were: no node"},
	} {
		if got := ownerNote("CronJob", tt.count, shapes.MessagePrefix+"no node"); !strings.HasPrefix(got, tt.want) {
			t.Errorf("ownerNote(%d) = %q, want %q...", tt.count, got, tt.want)
		}
	}
	long := ownerNote("CronJob", 2, shapes.MessagePrefix+strings.Repeat("x", 2000))
	if len(long) > maxNoteLength {
		t.Errorf("note of %d bytes", len(long))
	}
	name := ownerEventName(owner{Name: strings.Repeat("a", 253), UID: "u"}, "m")
	if len(name) > 253 || !strings.Contains(name, ".hopeless.") {
		t.Errorf("event name %q (%d)", name, len(name))
	}
	if ownerEventName(owner{Name: "a", UID: "u"}, "m1") == ownerEventName(owner{Name: "a", UID: "u"}, "m2") {
		t.Error("two messages of one owner share an event")
	}
}

// Events at scale: 40,000 parked pods (incident 8 ten times over, from a
// CronJob, a Deployment, a StatefulSet, a Job and some bare pods). Every
// pod gets its PodScheduled condition, one write each; events are one per
// owner and message, updated at most every ownerUpdateInterval, plus one
// per bare pod. Jobs come from one list and watch, none read by itself.
// Before the owner report, the same parking wrote 40,000 pod events.
func TestEventsAtScale(t *testing.T) {
	const (
		cronPods, deployPods, setPods, jobPods, barePods = 10000, 20000, 5000, 4900, 100
		total                                            = cronPods + deployPods + setPods + jobPods + barePods
	)
	deployRef := controllerRef("apps/v1", "Deployment", "web")
	objs, pods := cronJobChain("report", cronPods)
	objs = append(objs,
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-5d8f", UID: "ReplicaSet-web-5d8f", OwnerReferences: []metav1.OwnerReference{deployRef}}},
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "big", UID: "Job-big"}})
	add := func(n int, prefix string, refs ...metav1.OwnerReference) {
		for i := 0; i < n; i++ {
			p := podOwnedBy(fmt.Sprintf("%s-%d", prefix, i), refs...)
			pods = append(pods, p)
		}
	}
	add(deployPods, "web-5d8f", controllerRef("apps/v1", "ReplicaSet", "web-5d8f"))
	add(setPods, "db", controllerRef("apps/v1", "StatefulSet", "db"))
	add(jobPods, "big", controllerRef("batch/v1", "Job", "big"))
	add(barePods, "bare")
	// The pods live in a map, as in the plugin's informer; the condition
	// writes are counted per pod by a reactor (the fake tracker's strategic
	// merge would take minutes for 40,000 patches on 2 cores).
	byName := make(map[string]*v1.Pod, len(pods))
	for _, p := range pods {
		byName[p.Name] = p
	}
	f := newOwnerFixture(t, objs...)
	var mu sync.Mutex
	conditions := map[string]int{}
	f.client.PrependReactor("patch", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		pa := a.(clienttesting.PatchAction)
		if pa.GetSubresource() != "status" || !strings.Contains(string(pa.GetPatch()), taintMessage) {
			return true, nil, fmt.Errorf("unexpected patch %s %s", pa.GetSubresource(), pa.GetPatch())
		}
		mu.Lock()
		defer mu.Unlock()
		conditions[pa.GetName()]++
		return true, byName[pa.GetName()], nil
	})
	recorder := events.NewFakeRecorder(total)
	w := newStatusWriter(f.client, recorder, 1e6, f.clock)
	w.current = func(_ context.Context, _, name string) (*v1.Pod, error) { return byName[name], nil }
	w.leading = func() bool { return true }
	w.owners = f.ownerReport
	go w.runWrites(f.ctx)

	start := time.Now()
	for _, p := range pods {
		w.report(p, taintMessage, true)
	}
	statusPatches := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range conditions {
			n += c
		}
		return n
	}
	// The owner report's rounds, one per ownerRound of its clock, until
	// every owner is resolved and its event says the full count.
	want := map[string]string{
		"CronJob/report": "10,000 pods of this CronJob are parked: ",
		"Deployment/web": "20,000 pods of this Deployment are parked: ",
		"StatefulSet/db": "5,000 pods of this StatefulSet are parked: ",
		"Job/big":        "4,900 pods of this Job are parked: ",
	}
	rounds := 0
	if err := wait.PollUntilContextTimeout(f.ctx, time.Millisecond, 50*time.Second, true, func(context.Context) (bool, error) {
		f.clock.Step(ownerRound)
		f.round(f.ctx, true)
		rounds++
		evs := f.events(t)
		got := 0
		for _, e := range evs {
			if p, ok := want[e.InvolvedObject.Kind+"/"+e.InvolvedObject.Name]; ok && strings.HasPrefix(e.Message, p) {
				got++
			}
		}
		return got == len(want) && len(evs) == len(want), nil
	}); err != nil {
		for _, e := range f.events(t) {
			t.Logf("%s/%s: %q", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message)
		}
		t.Fatalf("owner events not complete after %d rounds: %v", rounds, err)
	}
	elapsed := time.Duration(rounds) * ownerRound
	if err := wait.PollUntilContextTimeout(f.ctx, 10*time.Millisecond, 50*time.Second, true, func(context.Context) (bool, error) {
		return statusPatches() == total && len(recorder.Events) == barePods, nil
	}); err != nil {
		t.Fatalf("%d condition writes and %d pod events for %d gated pods, %d of them bare", statusPatches(), len(recorder.Events), total, barePods)
	}
	creates, patches := f.writes()
	jobRequests := f.jobRequests()
	t.Logf("%d parked pods in %v: %d condition writes, %d pod events, %d owner event creates + %d patches over %v of owner rounds, requests for Jobs %v",
		total, time.Since(start).Round(time.Millisecond), statusPatches(), len(recorder.Events), creates, patches, elapsed, jobRequests)

	// Conditions stay per pod: exactly one write each, and every pod has it.
	if n := statusPatches(); n != total {
		t.Errorf("%d condition writes for %d pods, want one each", n, total)
	}
	for _, p := range pods {
		if c := conditions[p.Name]; c != 1 {
			t.Fatalf("pod %s: %d condition writes, want 1", p.Name, c)
		}
	}
	// Events are bounded by owners, not pods.
	if n := len(recorder.Events); n != barePods {
		t.Errorf("%d pod events, want %d (the bare pods only)", n, barePods)
	}
	owners := len(want)
	if bound := owners * (1 + int(elapsed/ownerUpdateInterval)); creates != owners || creates+patches > bound {
		t.Errorf("%d owner event creates and %d patches over %v, want %d creates and at most %d writes", creates, patches, elapsed, owners, bound)
	}
	// The Jobs come from one list and watch.
	if diff := cmp.Diff(map[string]int{"list": 1, "watch": 1}, jobRequests); diff != "" {
		t.Errorf("requests for Jobs by verb (-want, +got):\n%s", diff)
	}
	// The metric names the pile-up without naming the owner.
	series := gatherOwnerSeries(t, "ballast_hopeless_owner_max_parked_pods")
	if diff := cmp.Diff(map[[2]string]float64{
		{"CronJob", "default"}: cronPods, {"Deployment", "default"}: deployPods, {"StatefulSet", "default"}: setPods,
		{"Job", "default"}: jobPods, {ownerKindNone, "default"}: 1,
	}, series); diff != "" {
		t.Errorf("owner_max_parked_pods (-want, +got):\n%s", diff)
	}
}

// After a restart with thousands of parked CronJob pods, the report
// resolves every Job from a metadata informer of Jobs, not one GET per Job
// (50 a second: 40,000 pods took minutes): all pods are attributed to their
// CronJob as the informer delivers their Jobs, without a round per batch
// of lookups.
func TestJobOwnersAtRestart(t *testing.T) {
	const n = 5000
	jobs, pods := cronJobChain("report", n)
	f := newOwnerFixture(t, jobs...)
	for _, p := range pods {
		f.park(p, taintMessage)
	}
	// One round: it may start what the report needs; then no more rounds.
	f.round(f.ctx, false)
	start := time.Now()
	cron := owner{APIVersion: "batch/v1", Kind: "CronJob", Namespace: "default", Name: "report", UID: "CronJob-report"}
	attributed := func() int {
		got := 0
		for _, p := range pods {
			if o := f.ownerOfPod(p.UID); o != nil && *o == cron {
				got++
			}
		}
		return got
	}
	if err := wait.PollUntilContextTimeout(f.ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return attributed() == n, nil
	}); err != nil {
		t.Fatalf("%d of %d Job-owned pods attributed to their CronJob %v after one round: %v", attributed(), n, time.Since(start).Round(time.Millisecond), err)
	}
	t.Logf("%d pods attributed to their CronJob in %v", n, time.Since(start).Round(time.Millisecond))
	if gets := f.gets(); gets != 0 {
		t.Errorf("%d GETs of Jobs, want none (the informer's lister answers)", gets)
	}
	f.round(f.ctx, true)
	if evs := f.events(t); len(evs) != 1 || !strings.HasPrefix(evs[0].Message, "5,000 pods of this CronJob are parked: ") {
		t.Errorf("events after the first leading round: %+v", evs)
	}
}
