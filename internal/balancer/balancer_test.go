package balancer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
)

var zones = []string{"us-east-1a", "us-east-1b", "us-east-1c"}

const cluster = "prod"

type fixture struct {
	emu    *awstest.Server
	clock  *clocktesting.FakeClock
	kube   *fake.Clientset
	events *record.FakeRecorder
	b      *Balancer
}

func caTags(extra map[string]string) map[string]string {
	tags := map[string]string{"k8s.io/cluster-autoscaler/enabled": "true", "k8s.io/cluster-autoscaler/" + cluster: "owned"}
	for k, v := range extra {
		tags[k] = v
	}
	return tags
}

// published returns the node-group list the balancer wrote in its ConfigMap.
func (f *fixture) published(t testing.TB) *nodegroups.NodeGroupList {
	t.Helper()
	cm, err := f.kube.CoreV1().ConfigMaps(nodegroups.DefaultNamespace).Get(context.Background(), nodegroups.DefaultName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	list, err := nodegroups.Decode(cm.Data)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// newFixture is the balancer with the real internal/asg clients on the
// emulator's model, called in process (awstest.InProcessClientOptions): the
// SDK serializes, retries and paginates as on the wire; only the sockets are
// skipped.
func newFixture(t testing.TB, objs ...runtime.Object) *fixture {
	t.Helper()
	return newFixtureWith(t, (*awstest.Server).InProcessClientOptions, objs...)
}

// newLoopbackFixture is newFixture over the emulator's loopback HTTP
// listener, for the tests of how the SDK's retries and error codes reach the
// loop.
func newLoopbackFixture(t testing.TB, objs ...runtime.Object) *fixture {
	t.Helper()
	return newFixtureWith(t, (*awstest.Server).ClientOptions, objs...)
}

func newFixtureWith(t testing.TB, options func(*awstest.Server) asg.Options, objs ...runtime.Object) *fixture {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	emu := awstest.NewServer(clk)
	t.Cleanup(emu.Close)
	cloud, err := asg.New(context.Background(), options(emu))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{emu: emu, clock: clk, kube: fake.NewClientset(objs...), events: record.NewFakeRecorder(100000)}
	f.b = New(f.kube, cloud, f.events, clk, Options{Selector: asg.AutoDiscovery(cluster), HeartbeatTimeout: 5 * time.Minute}, nil)
	return f
}

func node(name, zone, instance string) *v1.Node {
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelHostname: name, v1.LabelTopologyZone: zone}},
		Spec:       v1.NodeSpec{ProviderID: fmt.Sprintf("aws:///%s/%s", zone, instance)},
	}
}

func localPV(name, host string, phase v1.PersistentVolumePhase) *v1.PersistentVolume {
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.PersistentVolumeSpec{
			Capacity:               v1.ResourceList{v1.ResourceStorage: resource.MustParse("100Gi")},
			PersistentVolumeSource: v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: "/mnt/disks/ssd0"}},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{host}}},
			}}}},
			ClaimRef: &v1.ObjectReference{Namespace: "db", Name: "data-" + name},
		},
		Status: v1.PersistentVolumeStatus{Phase: phase},
	}
	return pv
}

// cassandra seeds a three-zone group with 4+1+1 instances (the shape of
// incident 7) and one node per instance; it returns the node names by instance.
func cassandra(emu *awstest.Server) (map[string]string, []runtime.Object) {
	ids := emu.CreateGroup(awstest.GroupSpec{Name: "cassandra", Zones: zones, MaxSize: 10, InstanceType: "i3.xlarge",
		Tags: caTags(nil), Instances: map[string]int{zones[0]: 4, zones[1]: 1, zones[2]: 1}})
	names := map[string]string{}
	var objs []runtime.Object
	for _, z := range zones {
		for i, id := range ids[z] {
			n := fmt.Sprintf("cass-%s-%d", z[len(z)-1:], i)
			names[id] = n
			objs = append(objs, node(n, z, id))
		}
	}
	return names, objs
}

// seed gives the balancer a new clientset holding objs.
func (f *fixture) seed(objs ...runtime.Object) {
	f.kube = fake.NewClientset(objs...)
	f.b.kube = f.kube
}

// seedCassandra seeds the cassandra group and its nodes (cassandra), and the
// objects more; it returns the node names by instance.
func (f *fixture) seedCassandra(more ...runtime.Object) map[string]string {
	names, objs := cassandra(f.emu)
	f.seed(append(objs, more...)...)
	return names
}

func annotations(t *testing.T, f *fixture, name string) map[string]string {
	t.Helper()
	n, err := f.kube.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Annotations
}

func protected(f *fixture, group string) []string {
	var out []string
	for _, i := range f.emu.GroupInstances(group) {
		if i.ProtectedFromScaleIn {
			out = append(out, i.ID)
		}
	}
	slices.Sort(out)
	return out
}

var ownAnnotations = map[string]string{AnnotationScaleDownDisabled: "true", AnnotationProtectedBy: Source, AnnotationScaleInProtectedBy: Source}

// TestOneLoopProtectsLocalVolumes is incident 7: after one loop the group no
// longer rebalances, and the nodes of bound local volumes, one of them with no
// pod at all, are protected three ways.
func TestOneLoopProtectsLocalVolumes(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	// Two volumes on zone a nodes, bound; no pod anywhere. One released volume.
	names := f.seedCassandra(localPV("pv-a0", "cass-a-0", v1.VolumeBound), localPV("pv-a1", "cass-a-1", v1.VolumeBound), localPV("pv-b0", "cass-b-0", v1.VolumeReleased))
	byName := map[string]string{}
	for id, n := range names {
		byName[n] = id
	}

	if err := f.b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"AZRebalance"}, f.emu.Suspended("cassandra")); diff != "" {
		t.Errorf("suspended processes (-want, +got):\n%s", diff)
	}
	wantProtected := []string{byName["cass-a-0"], byName["cass-a-1"]}
	slices.Sort(wantProtected)
	if diff := cmp.Diff(wantProtected, protected(f, "cassandra")); diff != "" {
		t.Errorf("protected instances (-want, +got):\n%s", diff)
	}
	for _, n := range []string{"cass-a-0", "cass-a-1"} {
		if diff := cmp.Diff(ownAnnotations, annotations(t, f, n)); diff != "" {
			t.Errorf("%s annotations (-want, +got):\n%s", n, diff)
		}
	}
	for _, n := range []string{"cass-a-2", "cass-b-0", "cass-c-0"} {
		if a := annotations(t, f, n); len(a) != 0 {
			t.Errorf("%s: unexpected annotations %v", n, a)
		}
	}
	if diff := cmp.Diff([]awstest.Hook{{Name: HookName, Transition: asg.TransitionTerminating, DefaultResult: "CONTINUE", HeartbeatTimeout: 300, GlobalTimeout: 30000}}, f.emu.Hooks("cassandra")); diff != "" {
		t.Errorf("hooks (-want, +got):\n%s", diff)
	}
	// The zone recovers: nothing is rebalanced.
	if got := f.emu.AZRebalance(); len(got) != 0 {
		t.Errorf("AZRebalance terminated %v after the loop", got)
	}

	// A termination AWS starts anyway (here by hand) is held while the volume
	// is bound, and one of a node without volumes is let go at once.
	asc := autoscaling.New(autoscaling.Options{Region: "us-east-1", BaseEndpoint: awssdk.String(f.emu.URL), Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")})
	for _, n := range []string{"cass-a-0", "cass-a-2"} {
		if _, err := asc.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{InstanceId: awssdk.String(byName[n]), ShouldDecrementDesiredCapacity: awssdk.Bool(true)}); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 { // 4 loops of 4 minutes: longer than the 5 minute heartbeat timeout
		if err := f.b.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		f.clock.Step(4 * time.Minute)
	}
	if i, _ := f.emu.Instance(byName["cass-a-0"]); i.LifecycleState != awstest.TerminatingWait {
		t.Errorf("instance of cass-a-0 is %s, want it held in %s", i.LifecycleState, awstest.TerminatingWait)
	}
	if i, _ := f.emu.Instance(byName["cass-a-2"]); i.LifecycleState != "Terminated" {
		t.Errorf("instance of cass-a-2 is %s, want Terminated", i.LifecycleState)
	}
	if n := f.emu.Counts()["CompleteLifecycleAction"]; n != 1 {
		t.Errorf("%d CompleteLifecycleAction calls, want 1", n)
	}

	list := f.published(t)
	if list.Source != Source || len(list.NodeGroups) != 1 || list.NodeGroups[0].Labels[v1.LabelInstanceTypeStable] != "i3.xlarge" {
		t.Errorf("published %+v", list)
	}
}

func TestReleaseRemovesOnlyOwnProtection(t *testing.T) {
	tests := []struct {
		name       string
		pv         *v1.PersistentVolume // on node n0 after the first loop; nil deletes it
		userAnno   bool                 // someone else set scale-down-disabled on n1
		wantAnnos  map[string]string    // of n0 after the second loop
		wantProtIn bool                 // n0's instance still protected
	}{
		{name: "still bound", pv: localPV("pv", "n0", v1.VolumeBound), wantAnnos: ownAnnotations, wantProtIn: true},
		{name: "claim deleted, volume released", pv: localPV("pv", "n0", v1.VolumeReleased), wantAnnos: map[string]string{}},
		{name: "volume deleted", wantAnnos: map[string]string{}},
		{name: "volume available again", pv: func() *v1.PersistentVolume {
			pv := localPV("pv", "n0", v1.VolumeAvailable)
			pv.Spec.ClaimRef = nil
			return pv
		}(), wantAnnos: map[string]string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			ids := f.emu.CreateGroup(awstest.GroupSpec{Name: "db-a", Zones: zones[:1], MaxSize: 5, InstanceType: "i3.xlarge", Tags: caTags(nil), Instances: map[string]int{zones[0]: 2}})
			n0, n1 := node("n0", zones[0], ids[zones[0]][0]), node("n1", zones[0], ids[zones[0]][1])
			// n1 was protected by someone else: annotation and instance protection.
			n1.Annotations = map[string]string{AnnotationScaleDownDisabled: "true"}
			cloud, _ := asg.New(ctx, f.emu.ClientOptions())
			if err := cloud.SetInstanceProtection(ctx, "db-a", ids[zones[0]][1:], true); err != nil {
				t.Fatal(err)
			}
			f.seed(n0, n1, localPV("pv", "n0", v1.VolumeBound))
			if err := f.b.Reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(ownAnnotations, annotations(t, f, "n0")); diff != "" {
				t.Fatalf("n0 after the first loop (-want, +got):\n%s", diff)
			}
			if tc.pv == nil {
				if err := f.kube.CoreV1().PersistentVolumes().Delete(ctx, "pv", metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			} else if _, err := f.kube.CoreV1().PersistentVolumes().Update(ctx, tc.pv, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := f.b.Reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantAnnos, annotations(t, f, "n0"), cmpEmpty); diff != "" {
				t.Errorf("n0 annotations (-want, +got):\n%s", diff)
			}
			want := []string{ids[zones[0]][1]}
			if tc.wantProtIn {
				want = append(want, ids[zones[0]][0])
			}
			slices.Sort(want)
			if diff := cmp.Diff(want, protected(f, "db-a")); diff != "" {
				t.Errorf("protected instances (-want, +got):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]string{AnnotationScaleDownDisabled: "true"}, annotations(t, f, "n1")); diff != "" {
				t.Errorf("n1 (not ours) annotations (-want, +got):\n%s", diff)
			}
		})
	}
}

var cmpEmpty = cmp.Transformer("nilToEmpty", func(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
})

func TestFaultsAreSurvived(t *testing.T) {
	tests := []struct {
		name    string
		faults  []awstest.Fault
		wantErr bool
	}{
		{name: "throttling within the retries", faults: awstest.Throttling(3)},
		{name: "5xx within the retries", faults: awstest.ServerErrors(2)},
		{name: "one-shot error on protection", faults: []awstest.Fault{{Action: "SetInstanceProtection", Code: "ResourceContention", Status: 500, Times: 2}}},
		{name: "throttling beyond the retries", faults: awstest.Throttling(50), wantErr: true},
		{name: "suspend refused", faults: []awstest.Fault{{Action: "SuspendProcesses", Code: "ValidationError", Status: 400}}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newLoopbackFixture(t)
			f.seedCassandra(localPV("pv", "cass-a-0", v1.VolumeBound))
			f.emu.Inject(tc.faults...)
			err := f.b.Reconcile(ctx)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Reconcile: %v, want error %t", err, tc.wantErr)
			}
			f.emu.Reset()
			// The next loop finishes the job either way.
			if err := f.b.Reconcile(ctx); err != nil {
				t.Fatalf("second Reconcile: %v", err)
			}
			if diff := cmp.Diff([]string{"AZRebalance"}, f.emu.Suspended("cassandra")); diff != "" {
				t.Errorf("suspended (-want, +got):\n%s", diff)
			}
			if n := len(protected(f, "cassandra")); n != 1 {
				t.Errorf("%d protected instances, want 1", n)
			}
			for _, i := range f.emu.GroupInstances("cassandra") {
				if i.LifecycleState != awstest.InService {
					t.Errorf("%s is %s: faults must never terminate anything", i.ID, i.LifecycleState)
				}
			}
		})
	}
}

func TestMalformedTags(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.emu.CreateGroup(awstest.GroupSpec{Name: "gpu-a", Zones: zones[:1], MaxSize: 4, InstanceType: "p3.2xlarge", Tags: caTags(map[string]string{
		tagLabelPrefix + "pool":                     "gpu",
		tagLabelPrefix + "bad key!":                 "x",
		tagLabelPrefix + "team":                     "not a valid value",
		tagTaintPrefix + "nvidia.com/gpu":           "present:NoSchedule",
		tagTaintPrefix + "dedicated":                "batch:NoWait",
		tagTaintPrefix + "novalue":                  "NoSchedule",
		tagResourcePrefix + "ephemeral-storage":     "100Gi",
		tagResourcePrefix + "example.com/dongle":    "lots",
		tagResourcePrefix + "hugepages-2Mi":         "-1Gi",
		"k8s.io/cluster-autoscaler/node-template/x": "ignored",
	})})
	if err := f.b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	list := f.published(t)
	want := nodegroups.NodeGroup{
		Name: "gpu-a", Zone: zones[0], MaxSize: 4,
		Labels: map[string]string{"pool": "gpu", v1.LabelOSStable: "linux", v1.LabelArchStable: "amd64", v1.LabelInstanceTypeStable: "p3.2xlarge",
			v1.LabelTopologyZone: zones[0], v1.LabelTopologyRegion: "us-east-1",
			// The twins kubelet, the cloud node controller and the EBS CSI driver set (templates.go).
			"beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64", v1.LabelInstanceType: "p3.2xlarge",
			v1.LabelFailureDomainBetaZone: zones[0], v1.LabelFailureDomainBetaRegion: "us-east-1", "topology.ebs.csi.aws.com/zone": zones[0]},
		Taints: []v1.Taint{{Key: "nvidia.com/gpu", Value: "present", Effect: v1.TaintEffectNoSchedule}},
		// cluster-autoscaler's template: capacity, less its kube-proxy pod's 100m CPU.
		Allocatable: v1.ResourceList{
			v1.ResourceCPU: resource.MustParse("7900m"), v1.ResourceMemory: resource.MustParse("62464Mi"),
			"nvidia.com/gpu": resource.MustParse("1"), v1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
		},
		InstanceTypes: []string{"p3.2xlarge"},
	}
	if diff := cmp.Diff([]nodegroups.NodeGroup{want}, list.NodeGroups, cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })); diff != "" {
		t.Errorf("template (-want, +got):\n%s", diff)
	}
	var malformed []string
	for len(f.events.Events) > 0 {
		if e := <-f.events.Events; strings.Contains(e, ReasonMalformedTag) {
			malformed = append(malformed, e)
		}
	}
	if len(malformed) != 6 {
		t.Errorf("got %d malformed-tag events, want 6:\n%s", len(malformed), strings.Join(malformed, "\n"))
	}
	// A second loop reports nothing new.
	if err := f.b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	for len(f.events.Events) > 0 {
		if e := <-f.events.Events; strings.Contains(e, ReasonMalformedTag) {
			t.Errorf("reported again: %s", e)
		}
	}
}

func TestPlanChangesNothing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.seedCassandra(localPV("pv-a0", "cass-a-0", v1.VolumeBound), localPV("pv-gone", "cass-z-9", v1.VolumeBound))
	f.kube.ClearActions()
	actions, err := f.b.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var verbs []string
	for _, a := range actions {
		if a.Target != "event" {
			verbs = append(verbs, a.Target+" "+a.Verb)
		}
	}
	want := []string{
		"nodes/cass-a-0 patch",
		"persistentvolumes/pv-a0 patch", // records its instance (orphans.go)
		"configmaps/kube-system/ballast-node-groups create",
		"asg/cassandra SuspendProcesses",
		"asg/cassandra SetInstanceProtection",
		"asg/cassandra PutLifecycleHook",
	}
	if diff := cmp.Diff(want, verbs); diff != "" {
		t.Errorf("planned actions (-want, +got):\n%s", diff)
	}
	if calls := f.emu.MutatingCalls(); len(calls) != 0 {
		t.Errorf("plan made mutating AWS calls: %+v", calls)
	}
	for _, a := range f.kube.Actions() {
		if v := a.GetVerb(); v != "get" && v != "list" && v != "watch" {
			t.Errorf("plan wrote to the cluster: %s %s", v, a.GetResource().Resource)
		}
	}
	var out strings.Builder
	if err := PrintPlan(&out, actions); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "SuspendProcesses") || !strings.Contains(out.String(), ReasonOrphanedVolume) {
		t.Errorf("plan table:\n%s", out.String())
	}
	// The same loop for real does what was planned.
	if err := f.b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(f.emu.MutatingCalls()); got != 3 {
		t.Errorf("run made %d mutating AWS calls, plan said 3", got)
	}
}

// TestDiscoveryMatchesEnabledTrue: cluster-autoscaler discovers groups by the
// tag keys alone; the balancer's IAM policy allows changes only where
// k8s.io/cluster-autoscaler/enabled is "true". A group with another value is
// reported and left alone, never half-managed (every write AccessDenied).
func TestDiscoveryMatchesEnabledTrue(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	ids := f.emu.CreateGroup(awstest.GroupSpec{Name: "off", Zones: zones[:2], MaxSize: 5, InstanceType: "i3.xlarge",
		Tags: caTags(map[string]string{asg.TagAutoDiscoveryEnabled: "false"}), Instances: map[string]int{zones[0]: 1}})
	f.seed(node("n0", zones[0], ids[zones[0]][0]), localPV("pv", "n0", v1.VolumeBound))
	if err := f.b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range f.emu.MutatingCalls() {
		t.Errorf("changed a group whose enabled tag is not true: %s %v", c.Action, c.Params)
	}
	found := false
	for len(f.events.Events) > 0 {
		if e := <-f.events.Events; strings.Contains(e, ReasonGroupNotManaged) && strings.Contains(e, `"false"`) {
			found = true
		}
	}
	if !found {
		t.Errorf("no %s event for group off", ReasonGroupNotManaged)
	}
}
