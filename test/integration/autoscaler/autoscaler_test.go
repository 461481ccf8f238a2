//go:build e2e

package autoscaler

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ballastaws "github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/balancer"
	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// hopelessPrefix starts the PodScheduled message of every pod Ballast parks.
const hopelessPrefix = "hopeless: "

// The groups of every scenario; CA discovers them once at start.
var groups = []awstest.GroupSpec{
	// CA needs a node to run on; nothing else lands here.
	{Name: "system-a", Zones: zones[:1], MinSize: 1, MaxSize: 1, InstanceType: "m5.large", Instances: map[string]int{zones[0]: 1},
		Tags: map[string]string{tagLabel + "role": "system", tagTaint + "CriticalAddonsOnly": "true:NoSchedule"}},
	// Scenario 1: scale from zero.
	{Name: "batch-a", Zones: zones[:1], MaxSize: 3, InstanceType: "m5.xlarge",
		Tags: map[string]string{tagLabel + "pool": "batch", tagTaint + "dedicated": "batch:NoSchedule"}},
	// Scenario 2: two empty nodes, one holding a bound local volume.
	{Name: "store-a", Zones: zones[:1], MaxSize: 4, InstanceType: "i3.xlarge", Instances: map[string]int{zones[0]: 2},
		Tags: map[string]string{tagLabel + "pool": "store"}},
	// Scenario 3: incident 7's group, several zones, local volumes on every node.
	{Name: "cass", Zones: zones, MaxSize: 10, InstanceType: "i3.xlarge", Instances: map[string]int{zones[0]: 2, zones[1]: 1},
		Tags: map[string]string{tagLabel + "pool": "cass"}},
	// Scenario 4: template fidelity, one group per kind of static predicate.
	{Name: "fid-plain-b", Zones: zones[1:2], MaxSize: 3, InstanceType: "m5.large",
		Tags: map[string]string{tagLabel + "team": "fid-plain"}},
	{Name: "fid-taint-b", Zones: zones[1:2], MaxSize: 3, InstanceType: "c5.xlarge",
		Tags: map[string]string{tagLabel + "team": "fid-taint", tagTaint + "dedicated": "fid:NoSchedule"}},
	{Name: "fid-arm-c", Zones: zones[2:], MaxSize: 3, InstanceType: "m6g.large",
		Tags: map[string]string{tagLabel + "team": "fid-arm"}},
	{Name: "fid-gpu-c", Zones: zones[2:], MaxSize: 3, InstanceType: "p3.2xlarge",
		Tags: map[string]string{tagLabel + "team": "fid-gpu"}},
	// review10: a pod between the template's allocatable and its capacity.
	{Name: "fid-mem-b", Zones: zones[1:2], MaxSize: 3, InstanceType: "m5.large",
		Tags: map[string]string{tagLabel + "team": "fid-mem"}},
}

// TestAutoscaler runs the scenarios in order against one cluster-autoscaler.
func TestAutoscaler(t *testing.T) {
	bin := caBinary(t)
	var storeHeld, storeFree string
	w := newWorld(t, bin, groups, func(w *world) {
		// Local volumes exist before az-balancer and CA start: store-a's first
		// node and every node of cass hold one, no pod uses them.
		storeHeld, storeFree = w.groupNodes("store-a")[0], w.groupNodes("store-a")[1]
		testenv.BindLocalVolume(w.ctx, t, w.cs, w.ns, "data-store-0", "local-pv-"+storeHeld, storeHeld)
		for i, n := range w.groupNodes("cass") {
			testenv.BindLocalVolume(w.ctx, t, w.cs, w.ns, fmt.Sprintf("data-cass-%d", i), "local-pv-"+n, n)
		}
	}, func(w *world) {
		// CA must never see a held node before az-balancer protected it.
		for _, n := range append([]string{storeHeld}, w.groupNodes("cass")...) {
			w.waitProtected(n)
		}
	})
	start := time.Now()
	step := func(name string, f func(t *testing.T)) {
		t0 := time.Now()
		ok := t.Run(name, f)
		t.Logf("%s: %s (%v since CA started)", name, time.Since(t0).Round(time.Second), time.Since(start).Round(time.Second))
		if !ok {
			t.FailNow() // the scenarios share one CA; a broken one spoils the next
		}
	}
	step("scale from zero", func(t *testing.T) { testScaleFromZero(t, w) })
	step("protection of a node holding a bound local volume", func(t *testing.T) { testProtection(t, w, storeHeld, storeFree) })
	step("template fidelity", func(t *testing.T) { testTemplateFidelity(t, w) })
	step("incident 7 with CA running", func(t *testing.T) { testIncident7(t, w) })
	step("review10: requests between the template's allocatable and CA's", func(t *testing.T) { testBetweenAllocatableAndCapacity(t, w) })
}

// testBetweenAllocatableAndCapacity (review10): CA 1.36.1's AWS template
// sets allocatable to capacity (cloudprovider/aws/aws_manager.go:297) and
// adds a kube-proxy pod requesting 100m CPU only, so for an m5.large group
// at size zero CA scales up for a pod requesting 8000Mi of memory. The
// template az-balancer publishes says 7837Mi, and Ballast parks the pod: a
// pod CA adds a node for is parked. The fidelity matrix has no such row.
func testBetweenAllocatableAndCapacity(t *testing.T, w *world) {
	p := w.pod(t, "fid-mem-8000mi", map[string]string{"team": "fid-mem"}, request(v1.ResourceMemory, "8000Mi"))
	var parked, scaled bool
	w.waitFor("a verdict from Ballast and a decision from CA", 90*time.Second, func() (bool, error) {
		got, err := w.cs.CoreV1().Pods(w.ns).Get(w.ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		parked = parked || testenv.ParkedWith(hopelessPrefix)(got)
		evs := w.caEvents(p.Name)
		scaled = scaled || evs["TriggeredScaleUp"] != ""
		return scaled || evs["NotTriggerScaleUp"] != "", nil
	})
	if parked && scaled {
		t.Errorf("Ballast parked %s but CA scaled up for it (events %v)", p.Name, w.caEvents(p.Name))
	}
	if !scaled {
		t.Errorf("CA did not scale up for %s (events %v); its template has 8Gi", p.Name, w.caEvents(p.Name))
	}
}

// groupNodes waits for the Nodes of a group's running instances and returns
// their names, in launch order.
func (w *world) groupNodes(group string) []string {
	w.t.Helper()
	var names []string
	w.waitFor("the nodes of "+group, 30*time.Second, func() (bool, error) {
		names = names[:0]
		for _, i := range w.emu.GroupInstances(group) {
			if _, err := w.cs.CoreV1().Nodes().Get(w.ctx, i.ID, metav1.GetOptions{}); err != nil {
				return false, nil
			}
			names = append(names, i.ID)
		}
		return len(names) > 0, nil
	})
	return names
}

// waitProtected waits until az-balancer annotated the node and protected its instance.
func (w *world) waitProtected(node string) {
	w.t.Helper()
	w.waitFor("az-balancer to protect "+node, 30*time.Second, func() (bool, error) {
		n, err := w.cs.CoreV1().Nodes().Get(w.ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		i, _ := w.emu.Instance(node)
		return n.Annotations[balancer.AnnotationScaleDownDisabled] == "true" && i.ProtectedFromScaleIn, nil
	})
}

// pod is a pod of Ballast's profile; edit shapes it.
func (w *world) pod(t *testing.T, name string, selector map[string]string, edit func(*v1.Pod)) *v1.Pod {
	t.Helper()
	p := testenv.Pod(w.ns, name, schedulerName, selector, nil)
	if edit != nil {
		edit(p)
	}
	p, err := w.cs.CoreV1().Pods(w.ns).Create(w.ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.cs.CoreV1().Pods(w.ns).Delete(w.ctx, p.Name, *metav1.NewDeleteOptions(0)) })
	return p
}

func tolerate(key, value string) func(*v1.Pod) {
	return func(p *v1.Pod) {
		p.Spec.Tolerations = append(p.Spec.Tolerations, v1.Toleration{Key: key, Operator: v1.TolerationOpEqual, Value: value, Effect: v1.TaintEffectNoSchedule})
	}
}

func request(name v1.ResourceName, q string) func(*v1.Pod) {
	return func(p *v1.Pod) {
		c := &p.Spec.Containers[0]
		c.Resources.Requests[name] = resource.MustParse(q)
		if name != v1.ResourceCPU && name != v1.ResourceMemory {
			c.Resources.Limits = v1.ResourceList{name: resource.MustParse(q)}
		}
	}
}

// caEvents returns the reasons and messages of CA's events about a pod.
func (w *world) caEvents(pod string) map[string]string {
	evs, err := w.cs.CoreV1().Events(w.ns).List(w.ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, e := range evs.Items {
		if e.Source.Component == "cluster-autoscaler" {
			out[e.Reason] = e.Message
		}
	}
	return out
}

// writes returns the mutating calls on a group, in order.
func (w *world) writes(group string) []awstest.Call {
	var out []awstest.Call
	for _, c := range w.emu.MutatingCalls() {
		g := c.Params.Get("AutoScalingGroupName")
		if id := c.Params.Get("InstanceId"); g == "" && id != "" {
			i, _ := w.emu.Instance(id)
			g = i.Group
		}
		if g == group {
			out = append(out, c)
		}
	}
	return out
}

// testScaleFromZero: batch-a exists only as a template (size 0, labels and
// taint from its node-template tags). A pod no group can host is parked by
// Ballast and CA scales nothing for it, saying why; a pod only batch-a can
// host is not parked, CA scales batch-a from zero and the pod binds there.
func testScaleFromZero(t *testing.T, w *world) {
	lost := w.pod(t, "lost", map[string]string{"pool": "tpu"}, tolerate("dedicated", "batch"))
	testenv.WaitPod(w.ctx, t, w.cs, lost, 30*time.Second, "parked by Ballast", testenv.ParkedWith(hopelessPrefix))
	var why string
	w.waitFor("CA's NotTriggerScaleUp event on the parked pod", 60*time.Second, func() (bool, error) {
		why = w.caEvents(lost.Name)["NotTriggerScaleUp"]
		return why != "", nil
	})
	if !strings.Contains(why, "didn't match Pod's node affinity/selector") {
		t.Errorf("CA's reason for not scaling up for %s: %q, want the node selector named", lost.Name, why)
	}
	if got := w.emu.Counts()["SetDesiredCapacity"]; got != 0 {
		t.Fatalf("CA made %d SetDesiredCapacity calls for a pod no group can host", got)
	}

	trainer := w.pod(t, "trainer", map[string]string{"pool": "batch"}, tolerate("dedicated", "batch"))
	p := testenv.WaitPod(w.ctx, t, w.cs, trainer, 90*time.Second, "bound to a node CA added", testenv.Bound)
	if i, ok := w.emu.Instance(p.Spec.NodeName); !ok || i.Group != "batch-a" {
		t.Errorf("trainer bound to %s (instance %+v), want a node of batch-a", p.Spec.NodeName, i)
	}
	if ev := w.caEvents(trainer.Name)["TriggeredScaleUp"]; !strings.Contains(ev, "batch-a") {
		t.Errorf("CA's TriggeredScaleUp event on trainer: %q, want batch-a named", ev)
	}
	for _, c := range w.emu.Calls() {
		if c.Action == "SetDesiredCapacity" && c.Params.Get("AutoScalingGroupName") != "batch-a" {
			t.Errorf("CA scaled %s to %s, want only batch-a scaled", c.Params.Get("AutoScalingGroupName"), c.Params.Get("DesiredCapacity"))
		}
	}
	if p, err := w.cs.CoreV1().Pods(w.ns).Get(w.ctx, lost.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("the lost pod: %v", err)
	} else if testenv.Bound(p) || !testenv.ParkedWith(hopelessPrefix)(p) {
		t.Errorf("the lost pod after the scale-up: %s, want still parked", testenv.Describe(p))
	}
}

// testProtection: store-a's two nodes are empty; one holds a bound local PV
// whose pod is gone. By CA's measure both are unneeded. az-balancer's
// annotation keeps CA from removing the held one, whose instance keeps its
// scale-in protection; CA scales the other one down.
func testProtection(t *testing.T, w *world, held, free string) {
	w.waitLog("CA skipping the held node", 60*time.Second, "Skipping "+held+" from delete consideration - the node is marked as no scale down")
	w.waitFor("CA to terminate the free node's instance and its Node to go", 90*time.Second, func() (bool, error) {
		i, _ := w.emu.Instance(free)
		_, err := w.cs.CoreV1().Nodes().Get(w.ctx, free, metav1.GetOptions{})
		return i.EC2State == "terminated" && err != nil, nil
	})
	terminated := false
	for _, c := range w.emu.Calls() {
		if c.Action == "TerminateInstanceInAutoScalingGroup" {
			switch c.Params.Get("InstanceId") {
			case free:
				terminated = c.Params.Get("ShouldDecrementDesiredCapacity") == "true"
			case held:
				t.Errorf("CA asked to terminate %s, which holds a bound local volume", held)
			}
		}
	}
	if !terminated {
		t.Errorf("no TerminateInstanceInAutoScalingGroup(%s, decrement) from CA", free)
	}
	// Several more CA loops: the held node is still skipped, still there, still protected.
	skips := strings.Count(w.ca.Log(), "Skipping "+held+" from delete consideration")
	w.waitFor("five more CA loops", 60*time.Second, func() (bool, error) {
		return strings.Count(w.ca.Log(), "Skipping "+held+" from delete consideration") >= skips+5, nil
	})
	n, err := w.cs.CoreV1().Nodes().Get(w.ctx, held, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the held node: %v", err)
	}
	if n.Annotations[balancer.AnnotationScaleDownDisabled] != "true" {
		t.Errorf("held node annotations %v, want %s=true", n.Annotations, balancer.AnnotationScaleDownDisabled)
	}
	if i, _ := w.emu.Instance(held); i.LifecycleState != awstest.InService || !i.ProtectedFromScaleIn {
		t.Errorf("held instance %+v, want InService and protected from scale-in", i)
	}
	if g, _ := w.emu.Group("store-a"); g.Desired != 1 {
		t.Errorf("store-a desired %d, want 1", g.Desired)
	}
}

// testTemplateFidelity compares, pod by pod, Ballast's verdict with CA's
// "would fit the template": CA must scale up for exactly the pods Ballast
// does not park. No existing node can host any of these pods, so CA's
// answer is its template's.
func testTemplateFidelity(t *testing.T, w *world) {
	type row struct {
		name     string
		selector map[string]string
		edit     func(*v1.Pod)
		fits     bool // what both must say
	}
	zoneB := func(p *v1.Pod) {
		p.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{
			NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{
				{Key: "topology.ebs.csi.aws.com/zone", Operator: v1.NodeSelectorOpIn, Values: []string{zones[1]}}}}}}}}
	}
	rows := []row{
		{name: "plain", selector: map[string]string{"team": "fid-plain"}, fits: true},
		{name: "plain-in-zone-c", selector: map[string]string{"team": "fid-plain", v1.LabelTopologyZone: zones[2]}},
		{name: "plain-ebs-zone", selector: map[string]string{"team": "fid-plain"}, edit: zoneB, fits: true},
		{name: "plain-beta-zone", selector: map[string]string{"team": "fid-plain", v1.LabelFailureDomainBetaZone: zones[1]}, fits: true},
		{name: "plain-9gi", selector: map[string]string{"team": "fid-plain"}, edit: request(v1.ResourceMemory, "9Gi")},
		{name: "taint-untolerated", selector: map[string]string{"team": "fid-taint"}},
		{name: "taint-tolerated", selector: map[string]string{"team": "fid-taint"}, edit: tolerate("dedicated", "fid"), fits: true},
		{name: "by-instance-type", selector: map[string]string{v1.LabelInstanceTypeStable: "c5.xlarge"}, edit: tolerate("dedicated", "fid"), fits: true},
		{name: "arm64", selector: map[string]string{v1.LabelArchStable: "arm64"}, fits: true},
		{name: "arm-beta-os", selector: map[string]string{"team": "fid-arm", "beta.kubernetes.io/os": "linux"}, fits: true},
		{name: "arm-as-amd64", selector: map[string]string{"team": "fid-arm", v1.LabelArchStable: "amd64"}},
		{name: "gpu-1", selector: map[string]string{"team": "fid-gpu"}, edit: request("nvidia.com/gpu", "1"), fits: true},
		{name: "gpu-2", selector: map[string]string{"team": "fid-gpu"}, edit: request("nvidia.com/gpu", "2")},
		{name: "no-such-team", selector: map[string]string{"team": "fid-none"}},
	}
	pods := map[string]*v1.Pod{}
	for _, r := range rows {
		pods[r.name] = w.pod(t, "fid-"+r.name, r.selector, r.edit)
	}
	type outcome struct{ parked, scaled, decided bool }
	got := map[string]*outcome{}
	w.waitFor("a verdict from Ballast and a decision from CA for every pod", 120*time.Second, func() (bool, error) {
		all := true
		for _, r := range rows {
			o := got[r.name]
			if o == nil {
				o = &outcome{}
				got[r.name] = o
			}
			p, err := w.cs.CoreV1().Pods(w.ns).Get(w.ctx, pods[r.name].Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			o.parked = o.parked || testenv.ParkedWith(hopelessPrefix)(p)
			evs := w.caEvents(p.Name)
			switch {
			case testenv.Bound(p) || evs["TriggeredScaleUp"] != "":
				o.scaled, o.decided = true, true
			case evs["NotTriggerScaleUp"] != "" && (o.parked || testenv.Unschedulable(p)):
				o.decided = true
			}
			all = all && o.decided
		}
		return all, nil
	})
	for _, r := range rows {
		o := got[r.name]
		if o.parked == o.scaled {
			t.Errorf("pod %s: Ballast parked=%v but CA scaled up=%v (events %v)", r.name, o.parked, o.scaled, w.caEvents(pods[r.name].Name))
		}
		if o.scaled != r.fits {
			t.Errorf("pod %s: CA scaled up=%v, want %v", r.name, o.scaled, r.fits)
		}
	}
}

// testIncident7: the incident's shape, one group over three zones with a
// bound local volume on every node, while a zone is short of capacity. A
// burst of pods makes CA scale the group up (AWS launches where it can,
// leaving the group unbalanced); the zone recovers and AWS would rebalance;
// the burst ends and CA scales back down. No node with a bound local volume
// is terminated, and nothing fights: over several CA loops, CA and
// az-balancer leave the group alone.
func testIncident7(t *testing.T, w *world) {
	held := w.groupNodes("cass")
	w.waitFor("az-balancer to suspend AZRebalance on cass", 30*time.Second, func() (bool, error) {
		return slices.Contains(w.emu.Suspended("cass"), ballastaws.ProcessAZRebalance), nil
	})
	w.emu.RefuseLaunches(zones[2], true)
	var burst []*v1.Pod
	for i := range len(held) + 2 {
		burst = append(burst, w.pod(t, fmt.Sprintf("cass-burst-%d", i), map[string]string{"pool": "cass"}, request(v1.ResourceCPU, "3")))
	}
	for _, p := range burst {
		testenv.WaitPod(w.ctx, t, w.cs, p, 90*time.Second, "bound", testenv.Bound)
	}
	perZone := map[string]int{}
	for _, i := range w.emu.GroupInstances("cass") {
		perZone[i.Zone]++
	}
	if perZone[zones[2]] != 0 || perZone[zones[0]]+perZone[zones[1]] != len(held)+2 {
		t.Fatalf("cass per zone %v: want %d instances, none in the short zone %s", perZone, len(held)+2, zones[2])
	}
	// The zone recovers; AWS would rebalance the group now.
	w.emu.RefuseLaunches(zones[2], false)
	if victims := w.emu.AZRebalance(); len(victims) > 0 {
		t.Errorf("AZRebalance terminated %v despite az-balancer", victims)
	}
	// The burst ends: CA removes the nodes it added, never a held one.
	for _, p := range burst {
		if err := w.cs.CoreV1().Pods(w.ns).Delete(w.ctx, p.Name, *metav1.NewDeleteOptions(0)); err != nil {
			t.Fatal(err)
		}
	}
	w.waitFor("CA to scale cass back to its held nodes", 120*time.Second, func() (bool, error) {
		g, _ := w.emu.Group("cass")
		return g.Desired == int32(len(held)) && len(w.emu.GroupInstances("cass")) == len(held), nil
	})
	// Several CA loops (1 s) and az-balancer loops (2 s) with nothing to do.
	before := len(w.writes("cass"))
	loops := strings.Count(w.ca.Log(), "Starting main loop")
	w.waitFor("ten more CA loops", 60*time.Second, func() (bool, error) {
		return strings.Count(w.ca.Log(), "Starting main loop") >= loops+10, nil
	})
	writes := w.writes("cass")
	for _, c := range writes[before:] {
		if c.Action != "RecordLifecycleActionHeartbeat" {
			t.Errorf("a write on cass after it settled: %s %v", c.Action, c.Params)
		}
	}

	// Over the whole scenario: no held node terminated, no flapping.
	for _, n := range held {
		if i, _ := w.emu.Instance(n); i.LifecycleState != awstest.InService || !i.ProtectedFromScaleIn {
			t.Errorf("held instance %s: %+v, want InService and protected", n, i)
		}
	}
	var sizes []string
	protection := map[string][]string{}
	counts := map[string]int{}
	for _, c := range writes {
		counts[c.Action]++
		switch c.Action {
		case "SetDesiredCapacity":
			sizes = append(sizes, c.Params.Get("DesiredCapacity"))
		case "SetInstanceProtection":
			for k, v := range c.Params {
				if strings.HasPrefix(k, "InstanceIds.member.") {
					protection[v[0]] = append(protection[v[0]], c.Params.Get("ProtectedFromScaleIn"))
				}
			}
		case "ResumeProcesses":
			t.Errorf("ResumeProcesses on cass: %v", c.Params)
		case "TerminateInstanceInAutoScalingGroup":
			if slices.Contains(held, c.Params.Get("InstanceId")) {
				t.Errorf("CA asked to terminate held instance %s", c.Params.Get("InstanceId"))
			}
		}
	}
	t.Logf("writes on cass: %v; SetDesiredCapacity values %v", counts, sizes)
	if len(sizes) == 0 {
		t.Errorf("CA never scaled cass up")
	}
	for i := 1; i < len(sizes); i++ {
		if sizes[i] < sizes[i-1] { // single digits: string order is numeric order
			t.Errorf("SetDesiredCapacity on cass went down then up again: %v", sizes)
			break
		}
	}
	for id, vs := range protection {
		if slices.Contains(vs, "false") && slices.Contains(held, id) {
			t.Errorf("scale-in protection of held %s flipped: %v", id, vs)
		}
		if len(vs) > 1 {
			t.Errorf("scale-in protection of %s set %d times: %v", id, len(vs), vs)
		}
	}
}
