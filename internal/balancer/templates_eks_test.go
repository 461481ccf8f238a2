package balancer

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/shapes"
)

// An EKS managed node group as EKS makes it: its ASG (named eks-<ng>-<uuid>)
// carries eks:cluster-name and eks:nodegroup-name, and DescribeNodegroup
// (EKS API Reference) returns its Kubernetes labels, taints and capacity
// type. Every node the group launches carries those labels and taints, and
// eks.amazonaws.com/capacityType (EKS user guide, "Managed node groups":
// "Amazon EKS adds the eks.amazonaws.com/capacityType label"; "Node taints
// on managed node groups").
const mngASG = "eks-ml-0ac6b2a0"

func managedGroup(f *fixture, size int) {
	f.emu.CreateGroup(awstest.GroupSpec{Name: mngASG, Zones: []string{"us-east-1a"}, MaxSize: 4, InstanceType: "m5.xlarge",
		Tags:      caTags(map[string]string{"eks:cluster-name": cluster, "eks:nodegroup-name": "ml", "kubernetes.io/cluster/" + cluster: "owned"}),
		Instances: map[string]int{"us-east-1a": size}})
	f.emu.AddNodegroup(awstest.Nodegroup{Cluster: cluster, Name: "ml", CapacityType: "SPOT", AMIType: "AL2023_x86_64_STANDARD", Version: "1.37", ASG: mngASG,
		Labels: map[string]string{"team": "ml", "workload": "training"},
		Taints: []awstest.NodegroupTaint{{Key: "dedicated", Value: strp("ml"), Effect: "NO_SCHEDULE"}}})
}

func strp(s string) *string { return &s }

func templateOf(t *testing.T, f *fixture, name string) *nodegroups.NodeGroup {
	t.Helper()
	for _, g := range f.published(t).NodeGroups {
		if g.Name == name {
			return &g
		}
	}
	t.Fatalf("no template for %s in the published list", name)
	return nil
}

// mlPod selects the managed node group's EKS labels and tolerates its EKS
// taint: cluster-autoscaler 1.36.1 scales the group from zero for it, since
// its template of a managed node group carries the labels and taints of
// DescribeNodegroup (cloudprovider/aws/aws_manager.go, buildNodeFromTemplate:
// "Call AWS EKS DescribeNodegroup API"; aws_wrapper.go getManagedNodegroupInfo
// adds eks.amazonaws.com/capacityType from capacityType).
func mlPod() *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "trainer"},
		Spec: v1.PodSpec{
			NodeSelector: map[string]string{"team": "ml", "eks.amazonaws.com/capacityType": "SPOT"},
			Tolerations:  []v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "ml", Effect: v1.TaintEffectNoSchedule}},
			Containers:   []v1.Container{{Name: "c"}},
		},
	}
}

// verdict evaluates the pod the way the scheduler plugin does in autoscaling
// mode: a store with no node and the published templates, trusted.
func verdict(t *testing.T, list *nodegroups.NodeGroupList, pod *v1.Pod) shapes.Verdict {
	t.Helper()
	opts := &shapes.Options{IdentityLabels: sets.New(v1.LabelHostname)}
	st := shapes.NewStore(opts, true)
	st.SetTemplates(list, shapes.TemplatesOK)
	return st.Evaluate(shapes.NewRequirements(pod, nil, opts))
}

// TestTemplateOfManagedNodeGroupHasEKSLabelsAndTaints: the template of an
// EKS managed node group carries the labels and taints DescribeNodegroup
// returns, as cluster-autoscaler's does, so a pod that selects them is not
// parked (a false park before: the template had only the ASG's tags).
func TestTemplateOfManagedNodeGroupHasEKSLabelsAndTaints(t *testing.T) {
	f := newFixture(t)
	managedGroup(f, 0)
	if err := f.b.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	ng := templateOf(t, f, mngASG)
	for k, v := range map[string]string{
		"team": "ml", "workload": "training",
		"eks.amazonaws.com/capacityType": "SPOT", "eks.amazonaws.com/nodegroup": "ml",
		// CA's template has these from DescribeNodegroup too (amiType, version).
		"amiType": "AL2023_x86_64_STANDARD", "k8sVersion": "1.37",
	} {
		if ng.Labels[k] != v {
			t.Errorf("template label %s = %q, want %q (DescribeNodegroup)", k, ng.Labels[k], v)
		}
	}
	want := v1.Taint{Key: "dedicated", Value: "ml", Effect: v1.TaintEffectNoSchedule}
	if len(ng.Taints) != 1 || ng.Taints[0] != want {
		t.Errorf("template taints %v, want [%v] (DescribeNodegroup's NO_SCHEDULE taint)", ng.Taints, want)
	}
	if v := verdict(t, f.published(t), mlPod()); v.Hopeless || v.FailOpen {
		t.Errorf("a pod selecting the managed group's EKS labels and tolerating its taint: hopeless %v (%s), fail-open %v; CA scales the group up for it",
			v.Hopeless, v.Message, v.FailOpen)
	}
	// A pod that does not tolerate the EKS taint fits no template: hopeless,
	// as for CA (its template has the taint).
	p := mlPod()
	p.Spec.Tolerations = nil
	if v := verdict(t, f.published(t), p); !v.Hopeless {
		t.Errorf("a pod not tolerating the managed group's EKS taint is not hopeless against the published list")
	}
}

// TestManagedNodeGroupEKSCache: DescribeNodegroup is asked once per node
// group and cache period (cluster-autoscaler caches it for 6 minutes,
// managed_nodegroup_cache.go), not once per loop.
func TestManagedNodeGroupEKSCache(t *testing.T) {
	f := newFixture(t)
	managedGroup(f, 0)
	for range 3 {
		if err := f.b.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
		f.clock.Step(30 * time.Second)
	}
	if n := f.emu.Counts()[awstest.ActionDescribeNodegroup]; n != 1 {
		t.Errorf("%d DescribeNodegroup calls in three loops within the cache period, want 1", n)
	}
	f.emu.AddNodegroup(awstest.Nodegroup{Cluster: cluster, Name: "ml", CapacityType: "ON_DEMAND", ASG: mngASG, Labels: map[string]string{"team": "ml2"}})
	f.clock.Step(eksCacheTTL)
	if err := f.b.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := f.emu.Counts()[awstest.ActionDescribeNodegroup]; n != 2 {
		t.Errorf("%d DescribeNodegroup calls after the cache period, want 2", n)
	}
	if ng := templateOf(t, f, mngASG); ng.Labels["team"] != "ml2" || len(ng.Taints) != 0 {
		t.Errorf("template after the node group changed: labels %v taints %v, want team=ml2 and no taint", ng.Labels, ng.Taints)
	}
}

// TestManagedNodeGroupEKSFailureFailsOpen: when DescribeNodegroup fails
// (AccessDeniedException without the IAM grant, throttling beyond the SDK's
// retries, a server error, EKS turned off), the group's labels
// and taints are unknown: a template without them would be stricter than the
// node the group launches and park pods CA scales up for. No list is
// published (the plugin fails open when the list is missing or ages past
// maxTemplateAge), a warning says why, and nothing else is spoiled.
func TestManagedNodeGroupEKSFailureFailsOpen(t *testing.T) {
	for name, fault := range map[string]func(f *fixture){
		"access denied": func(f *fixture) {
			f.emu.Inject(awstest.EKSFault("ml", "AccessDeniedException", http.StatusForbidden, 100))
		},
		"throttled": func(f *fixture) {
			f.emu.Inject(awstest.EKSFault("ml", "ThrottlingException", http.StatusBadRequest, 100))
		},
		"server error": func(f *fixture) {
			f.emu.Inject(awstest.EKSFault("", "ServerException", http.StatusInternalServerError, 100))
		},
		"turned off (--eks-describe-nodegroups=false)": func(f *fixture) {
			o := f.emu.ClientOptions()
			o.DisableEKS = true
			cloud, err := asg.New(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			f.b = New(f.kube, cloud, f.events, f.clock, f.b.opts, nil)
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newLoopbackFixture(t)
			managedGroup(f, 0)
			fault(f)
			if err := f.b.Reconcile(context.Background()); err != nil {
				t.Fatalf("an EKS failure fails the loop: %v", err)
			}
			_, err := f.kube.CoreV1().ConfigMaps(nodegroups.DefaultNamespace).Get(context.Background(), nodegroups.DefaultName, metav1.GetOptions{})
			if !apierrors.IsNotFound(err) {
				t.Fatalf("a node-group list was published although the managed group's EKS labels and taints are unknown (get: %v)", err)
			}
			if !hasEvent(f, ReasonTemplateIncomplete, mngASG) {
				t.Errorf("no %s warning naming %s", ReasonTemplateIncomplete, mngASG)
			}
		})
	}
}

// TestManagedNodeGroupNotFoundIsCATemplate: a group whose eks: tags name a
// node group EKS does not know (ResourceNotFoundException, HTTP 404: "The
// specified resource could not be found", EKS API Reference,
// DescribeNodegroup) is no managed node group: its nodes get no EKS labels,
// and cluster-autoscaler 1.36.1 builds its template without them (it caches
// the empty answer). The list is published with that template, as CA's,
// and a warning says why; withholding the whole list would stop every
// verdict over one stale tag.
func TestManagedNodeGroupNotFoundIsCATemplate(t *testing.T) {
	f := newFixture(t)
	managedGroup(f, 0)
	f.emu.DeleteNodegroup(cluster, "ml")
	if err := f.b.Reconcile(context.Background()); err != nil {
		t.Fatalf("a node group EKS does not know fails the loop: %v", err)
	}
	ng := templateOf(t, f, mngASG)
	if _, ok := ng.Labels["eks.amazonaws.com/capacityType"]; ok || ng.Labels["team"] != "" || len(ng.Taints) != 0 {
		t.Errorf("template of a node group EKS does not know: labels %v taints %v, want no EKS labels or taints", ng.Labels, ng.Taints)
	}
	if ng.Labels["nodegroup-name"] != "ml" {
		t.Errorf("template lost the labels of its eks: tags: %v", ng.Labels)
	}
	if !hasEvent(f, ReasonTemplateIncomplete, mngASG) {
		t.Errorf("no %s warning naming %s", ReasonTemplateIncomplete, mngASG)
	}
	calls := describeNodegroupCalls(f)
	if err := f.b.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if again := describeNodegroupCalls(f); again != calls {
		t.Errorf("EKS asked again within the cache's time (%d calls, then %d)", calls, again)
	}
}

func describeNodegroupCalls(f *fixture) int {
	n := 0
	for _, c := range f.emu.Calls() {
		if c.Action == awstest.ActionDescribeNodegroup {
			n++
		}
	}
	return n
}

// TestManagedNodeGroupEKSFailureKeepsOldList: a list published while EKS
// answered is left as it was when EKS stops answering (it ages, and the
// plugin stops trusting it after maxTemplateAge); it is not replaced by one
// without the group's EKS labels. When EKS answers again, the list is
// published again.
func TestManagedNodeGroupEKSFailureKeepsOldList(t *testing.T) {
	f := newFixture(t)
	managedGroup(f, 0)
	if err := f.b.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := f.published(t)
	f.emu.Inject(awstest.EKSFault("ml", "AccessDeniedException", http.StatusForbidden, 1000))
	f.clock.Step(eksCacheTTL + f.b.opts.TemplateRefresh)
	if err := f.b.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := f.published(t)
	if !after.GeneratedAt.Equal(*before.GeneratedAt) {
		t.Errorf("the list was rewritten at %v while EKS failed, want it left as published at %v", after.GeneratedAt, before.GeneratedAt)
	}
	f.emu.Reset()
	f.clock.Step(eksErrorRetry)
	if err := f.b.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if again := f.published(t); !again.GeneratedAt.After(*before.GeneratedAt) || again.NodeGroups[0].Labels["team"] != "ml" {
		t.Errorf("after EKS recovered: generatedAt %v (before %v), labels %v", again.GeneratedAt, before.GeneratedAt, again.NodeGroups[0].Labels)
	}
}

// TestManagedNodeGroupMalformedEKSData: labels and taints EKS would never
// return but a broken reply could (a key that is no label key, an unknown
// taint effect, a taint without key) are skipped with a warning; the
// template is built from the rest and published. A skipped taint only makes
// the template admit more. A taint without value is left out as
// cluster-autoscaler 1.36.1 does (it takes only taints with key and value).
func TestManagedNodeGroupMalformedEKSData(t *testing.T) {
	f := newFixture(t)
	managedGroup(f, 0)
	f.emu.AddNodegroup(awstest.Nodegroup{Cluster: cluster, Name: "ml", CapacityType: "SPOT", ASG: mngASG,
		Labels: map[string]string{"team": "ml", "not a key!": "x", "ok-key": "bad value!"},
		Taints: []awstest.NodegroupTaint{
			{Key: "dedicated", Value: strp("ml"), Effect: "NO_SCHEDULE"},
			{Key: "weird", Value: strp("x"), Effect: "SOMETIMES"},
			{Key: "", Value: strp("x"), Effect: "NO_EXECUTE"},
			{Key: "novalue", Effect: "NO_EXECUTE"},
			{Key: "soft", Value: strp(""), Effect: "PREFER_NO_SCHEDULE"},
		}})
	if err := f.b.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	ng := templateOf(t, f, mngASG)
	if ng.Labels["team"] != "ml" || ng.Labels["eks.amazonaws.com/capacityType"] != "SPOT" {
		t.Errorf("well-formed EKS labels missing: %v", ng.Labels)
	}
	for _, k := range []string{"not a key!", "ok-key"} {
		if _, ok := ng.Labels[k]; ok {
			t.Errorf("malformed EKS label %q became a template label", k)
		}
	}
	want := []v1.Taint{{Key: "dedicated", Value: "ml", Effect: v1.TaintEffectNoSchedule}, {Key: "soft", Effect: v1.TaintEffectPreferNoSchedule}}
	if len(ng.Taints) != len(want) || ng.Taints[0] != want[0] || ng.Taints[1] != want[1] {
		t.Errorf("template taints %v, want %v", ng.Taints, want)
	}
	if !hasEvent(f, ReasonMalformedEKSNodegroup, "not a key!") || !hasEvent(f, ReasonMalformedEKSNodegroup, "SOMETIMES") {
		t.Errorf("no %s warnings for the malformed label and taint", ReasonMalformedEKSNodegroup)
	}
}

// TestSelfManagedGroupNeedsNoEKS: a group without the eks: tags is not a
// managed node group: no DescribeNodegroup call, and an EKS outage does not
// hold its template back.
func TestSelfManagedGroupNeedsNoEKS(t *testing.T) {
	f := newFixture(t)
	f.emu.CreateGroup(awstest.GroupSpec{Name: "web-a", Zones: []string{"us-east-1a"}, MaxSize: 3, InstanceType: "m5.large", Tags: caTags(nil)})
	f.emu.Inject(awstest.EKSFault("", "AccessDeniedException", http.StatusForbidden, 100))
	if err := f.b.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	templateOf(t, f, "web-a")
	if n := f.emu.Counts()[awstest.ActionDescribeNodegroup]; n != 0 {
		t.Errorf("%d DescribeNodegroup calls for a self-managed group", n)
	}
}

// hasEvent reports whether an event recorded so far has the reason and
// substr; the events read are put back for the next call.
func hasEvent(f *fixture, reason, substr string) bool {
	var seen []string
	found := false
	for len(f.events.Events) > 0 {
		e := <-f.events.Events
		seen = append(seen, e)
		found = found || (strings.Contains(e, reason) && strings.Contains(e, substr))
	}
	for _, e := range seen {
		f.events.Events <- e
	}
	return found
}

// TestManagedNodeGroupEKSPrecedence: as in cluster-autoscaler 1.36.1
// (aws_manager.go joinNodeLabelsChoosingUserValuesOverAPIValues: "this will
// overwrite the ASG Tag specified values with the EKS DescribeNodegroup API
// values"), a label EKS gives wins over the same label from the ASG's
// node-template tag, and a resource from the node group's resource tags
// wins over the ASG's ("ManagedNodeGroup resource-indicating tags override
// conflicting tags on the ASG"); the ASG's taints stay, the node group's are
// added.
func TestManagedNodeGroupEKSPrecedence(t *testing.T) {
	f := newFixture(t)
	f.emu.CreateGroup(awstest.GroupSpec{Name: mngASG, Zones: []string{"us-east-1a"}, MaxSize: 4, InstanceType: "m5.xlarge",
		Tags: caTags(map[string]string{"eks:cluster-name": cluster, "eks:nodegroup-name": "ml",
			tagLabelPrefix + "team":                     "web",
			tagLabelPrefix + "disk":                     "ssd",
			tagResourcePrefix + "example.com/dongle":    "1",
			tagTaintPrefix + "example.com/from-asg-tag": "x:NoSchedule",
		})})
	f.emu.AddNodegroup(awstest.Nodegroup{Cluster: cluster, Name: "ml", ASG: mngASG,
		Labels: map[string]string{"team": "ml"},
		Taints: []awstest.NodegroupTaint{{Key: "dedicated", Value: strp("ml"), Effect: "NO_EXECUTE"}},
		Tags:   map[string]string{tagResourcePrefix + "example.com/dongle": "4", tagLabelPrefix + "ignored": "x"}})
	if err := f.b.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	ng := templateOf(t, f, mngASG)
	if ng.Labels["team"] != "ml" || ng.Labels["disk"] != "ssd" {
		t.Errorf("labels team=%q disk=%q, want team=ml (EKS over the ASG tag) and disk=ssd (ASG tag)", ng.Labels["team"], ng.Labels["disk"])
	}
	if _, ok := ng.Labels["ignored"]; ok {
		t.Errorf("a node-template label tag of the EKS node group became a label; CA takes only resources from those tags")
	}
	if q := ng.Allocatable["example.com/dongle"]; q.Value() != 4 {
		t.Errorf("allocatable example.com/dongle = %s, want 4 (the node group's tag over the ASG's)", q.String())
	}
	want := []v1.Taint{{Key: "example.com/from-asg-tag", Value: "x", Effect: v1.TaintEffectNoSchedule}, {Key: "dedicated", Value: "ml", Effect: v1.TaintEffectNoExecute}}
	if len(ng.Taints) != 2 || ng.Taints[0] != want[0] || ng.Taints[1] != want[1] {
		t.Errorf("taints %v, want %v", ng.Taints, want)
	}
}
