//go:build e2e

package autoscaler

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	ballastaws "github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/balancer"
	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// hopelessEventReason is the reason of the event Ballast records when it
// parks a pod (plugins/hopeless EventReason).
const hopelessEventReason = "Hopeless"

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
	// Starting nodes: a group at its maximum once CA added its only node, and
	// one that could grow further.
	{Name: "boot-a", Zones: zones[:1], MaxSize: 1, InstanceType: "m5.large", Tags: map[string]string{tagLabel + "pool": "boot"}},
	{Name: "slow-a", Zones: zones[:1], MaxSize: 3, InstanceType: "m5.large", Tags: map[string]string{tagLabel + "pool": "slow"}},
	// Template fidelity, second round: several zones, zone ids, ephemeral
	// storage, huge pages, NoExecute and PreferNoSchedule taints.
	{Name: "fid-multi-bc", Zones: zones[1:], MaxSize: 3, InstanceType: "m5.large",
		Tags: map[string]string{tagLabel + "team": "fid-multi"}},
	{Name: "fid-zoneid-b", Zones: zones[1:2], MaxSize: 3, InstanceType: "m5.large",
		Tags: map[string]string{tagLabel + "team": "fid-zoneid"}},
	{Name: "fid-eph-b", Zones: zones[1:2], MaxSize: 3, InstanceType: "m5.large",
		Tags: map[string]string{tagLabel + "team": "fid-eph"}},
	{Name: "fid-ephtag-b", Zones: zones[1:2], MaxSize: 3, InstanceType: "m5.large",
		Tags: map[string]string{tagLabel + "team": "fid-ephtag", tagResource + "ephemeral-storage": "18Gi"}},
	{Name: "fid-huge-b", Zones: zones[1:2], MaxSize: 3, InstanceType: "m5.large",
		Tags: map[string]string{tagLabel + "team": "fid-huge", tagResource + "hugepages-2Mi": "1Gi"}},
	{Name: "fid-noexec-b", Zones: zones[1:2], MaxSize: 3, InstanceType: "m5.large",
		Tags: map[string]string{tagLabel + "team": "fid-noexec", tagTaint + "dedicated": "fid-ne:NoExecute"}},
	{Name: "fid-prefer-b", Zones: zones[1:2], MaxSize: 3, InstanceType: "m5.large",
		Tags: map[string]string{tagLabel + "team": "fid-prefer", tagTaint + "dedicated": "fid-pref:PreferNoSchedule"}},
	// review10c: a group whose nodes get a kubelet label (not in the tags),
	// scaled up, then down to zero.
	{Name: "last-a", Zones: zones[:1], MaxSize: 2, InstanceType: "m5.large",
		Tags: map[string]string{tagLabel + "pool": "last", tagKubeletLabel + "workload": "last"}},
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
	step("pods waiting on starting nodes", func(t *testing.T) { testStartingNodes(t, w) })
	step("template fidelity", func(t *testing.T) { testTemplateFidelity(t, w) })
	step("incident 7 with CA running", func(t *testing.T) { testIncident7(t, w) })
	step("review10: requests between the template's allocatable and CA's", func(t *testing.T) { testBetweenAllocatableAndCapacity(t, w) })
	step("review10c: a group at zero keeps its last node's labels", func(t *testing.T) { testScaledToZeroKeepsLastNode(t, w) })
	// Last: they restart CA and az-balancer.
	step("CA and az-balancer start together", func(t *testing.T) { testStartRace(t, w, "race-together-a", false, 0) })
	step("CA starts first", func(t *testing.T) { testStartRace(t, w, "race-cafirst-a", true, 0) })
	step("CA starts first, AWS throttles az-balancer's start", func(t *testing.T) { testStartRace(t, w, "race-throttled-a", true, 30) })
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
		parked = parked || testenv.ParkedByBallast(got)
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

// testStartingNodes: CA adds a node for a pod, and the node starts the way a
// real one does (the kubelet loop: uninitialized and not-ready taints,
// Ready=False, then initialized, then Ready and untainted). boot-a reaches
// its maximum with that node, so while it starts the node is the only one
// that could ever host boot's pod: Ballast must not park the pod because
// the node still carries its startup taints. slow-a could grow further: CA
// must count its starting node as the pod's and not scale up again. Both
// pods bind once their nodes are ready.
func testStartingNodes(t *testing.T, w *world) {
	boot := w.pod(t, "boot", map[string]string{"pool": "boot"}, nil)
	// The zone label comes with the cloud node controller's initialization:
	// until then the node does not match this pod's selector.
	zonal := w.pod(t, "boot-zonal", map[string]string{"pool": "boot", v1.LabelTopologyZone: zones[0]}, nil)
	// So does the zone of a bound EBS volume.
	w.bindZonalVolume(t, "boot-ebs", v1.LabelTopologyZone, zones[0])
	ebs := w.pod(t, "boot-ebs", map[string]string{"pool": "boot"}, func(p *v1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, v1.Volume{Name: "data", VolumeSource: v1.VolumeSource{
			PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "boot-ebs"}}})
	})
	slow := w.pod(t, "slow", map[string]string{"pool": "slow"}, nil)
	// While they wait, watch the nodes start: each must be seen tainted
	// and not Ready with its pod still pending, or the scenario tested nothing.
	startingSeen := map[string]bool{}
	w.waitFor("the pods bound", 90*time.Second, func() (bool, error) {
		bound := 0
		for _, p := range []*v1.Pod{boot, zonal, ebs, slow} {
			got, err := w.cs.CoreV1().Pods(w.ns).Get(w.ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if testenv.Bound(got) {
				bound++
				continue
			}
			group := map[string]string{boot.Name: "boot-a", zonal.Name: "boot-a", ebs.Name: "boot-a", slow.Name: "slow-a"}[p.Name]
			for _, i := range w.emu.GroupInstances(group) {
				if n, err := w.cs.CoreV1().Nodes().Get(w.ctx, i.ID, metav1.GetOptions{}); err == nil && starting(n) {
					startingSeen[group] = true
				}
			}
		}
		return bound == 4, nil
	})
	for _, g := range []string{"boot-a", "slow-a"} {
		if !startingSeen[g] {
			t.Errorf("no node of %s was seen starting while its pod waited", g)
		}
	}
	// Several CA loops more, then count what CA asked of AWS.
	loops := strings.Count(w.ca.Log(), "Starting main loop")
	w.waitFor("five more CA loops", 60*time.Second, func() (bool, error) {
		return strings.Count(w.ca.Log(), "Starting main loop") >= loops+5, nil
	})
	for _, p := range []*v1.Pod{boot, zonal, ebs, slow} {
		if evs := w.parkEvents(p.Name); len(evs) > 0 {
			t.Errorf("Ballast parked %s while the node CA added for it was starting: %q", p.Name, evs)
		}
	}
	for _, g := range []string{"boot-a", "slow-a"} {
		var sizes []string
		for _, c := range w.writes(g) {
			switch c.Action {
			case "SetDesiredCapacity":
				sizes = append(sizes, c.Params.Get("DesiredCapacity"))
			case "TerminateInstanceInAutoScalingGroup":
				t.Errorf("CA terminated %s of %s", c.Params.Get("InstanceId"), g)
			}
		}
		if !slices.Equal(sizes, []string{"1"}) {
			t.Errorf("SetDesiredCapacity on %s: %v, want one scale-up to 1 for its pods", g, sizes)
		}
		if n := len(w.emu.GroupInstances(g)); n != 1 {
			t.Errorf("%s runs %d instances, want 1", g, n)
		}
	}
}

// starting reports whether a node still carries a startup taint or is not Ready.
func starting(n *v1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady && c.Status != v1.ConditionTrue {
			return true
		}
	}
	for _, t := range n.Spec.Taints {
		if t.Key == v1.TaintNodeNotReady || t.Key == taintUninitialized {
			return true
		}
	}
	return false
}

// parkEvents returns the messages of Ballast's events parking a pod (the
// plugin's EventReason); the events outlive the pod's condition.
func (w *world) parkEvents(pod string) []string {
	evs, err := w.cs.CoreV1().Events(w.ns).List(w.ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil {
		w.t.Fatalf("events of %s: %v", pod, err)
	}
	var out []string
	for _, e := range evs.Items {
		if e.Reason == hopelessEventReason {
			out = append(out, e.Message)
		}
	}
	return out
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
	testenv.WaitPod(w.ctx, t, w.cs, lost, 30*time.Second, "parked by Ballast", testenv.ParkedByBallast)
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
	} else if testenv.Bound(p) || !testenv.ParkedByBallast(p) {
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

// testTemplateFidelity compares, pod by pod, Ballast's verdict with
// cluster-autoscaler's decision from its template of a group at size zero:
// CA must scale up for exactly the pods Ballast does not park, except the
// rows marked failOpen, where Ballast's template admits more than CA's (the
// node the group launches does have what the pod asks; CA 1.36.1's template
// lacks it) and Ballast leaves the pod pending rather than park it. No
// existing node can host any of these pods, so CA's first answer is its
// template's; a pod that later binds to a node another row brought up
// counts as scaled only if CA never said no for it.
//
// What CA 1.36.1's AWS template holds (cloudprovider/aws/aws_manager.go,
// buildNodeFromTemplate, getAsgTemplate): cpu, memory, pods and GPUs of the
// instance type and whatever the node-template resources tags add
// (ephemeral storage and huge pages only from tags: the launch template's
// block devices are not read); the stable os/arch/instance-type/region
// labels, the zone and the EBS CSI zone of the group's first zone only, the
// node-template label tags; the node-template taint tags of every effect.
// No zone id, no beta os/arch labels.
func testTemplateFidelity(t *testing.T, w *world) {
	type row struct {
		name     string
		selector map[string]string
		edit     func(*v1.Pod)
		fits     bool // CA scales up for it, and Ballast does not park it
		failOpen bool // CA does not scale up for it, and Ballast does not park it
	}
	zoneB := func(p *v1.Pod) {
		p.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{
			NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{
				{Key: "topology.ebs.csi.aws.com/zone", Operator: v1.NodeSelectorOpIn, Values: []string{zones[1]}}}}}}}}
	}
	tolerateEffect := func(key, value string, effect v1.TaintEffect) func(*v1.Pod) {
		return func(p *v1.Pod) {
			op := v1.TolerationOpEqual
			if value == "" {
				op = v1.TolerationOpExists
			}
			p.Spec.Tolerations = append(p.Spec.Tolerations, v1.Toleration{Key: key, Operator: op, Value: value, Effect: effect})
		}
	}
	// Volumes: EBS volumes bound to a zone (the CSI driver's topology key,
	// or the well-known one newer drivers write), and claims of a
	// WaitForFirstConsumer class whose allowed topology is one zone.
	w.bindZonalVolume(t, "fid-pvc-b", v1.LabelTopologyZone, zones[1])
	w.bindZonalVolume(t, "fid-pvc-c", "topology.ebs.csi.aws.com/zone", zones[2])
	w.bindZonalVolume(t, "fid-multi-pvc-c", v1.LabelTopologyZone, zones[2])
	w.wffcClaim(t, "fid-wffc-b", zones[1])
	w.wffcClaim(t, "fid-wffc-c", zones[2])
	claim := func(name string) func(*v1.Pod) {
		return func(p *v1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, v1.Volume{Name: "data", VolumeSource: v1.VolumeSource{
				PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: name}}})
		}
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
		// The node has kubelet's beta os and arch labels; CA's template does not.
		{name: "arm-beta-os", selector: map[string]string{"team": "fid-arm", "beta.kubernetes.io/os": "linux"}, failOpen: true},
		{name: "arm-beta-arch", selector: map[string]string{"team": "fid-arm", "beta.kubernetes.io/arch": "arm64"}, failOpen: true},
		{name: "arm-as-amd64", selector: map[string]string{"team": "fid-arm", v1.LabelArchStable: "amd64"}},
		{name: "gpu-1", selector: map[string]string{"team": "fid-gpu"}, edit: request("nvidia.com/gpu", "1"), fits: true},
		{name: "gpu-2", selector: map[string]string{"team": "fid-gpu"}, edit: request("nvidia.com/gpu", "2")},
		{name: "no-such-team", selector: map[string]string{"team": "fid-none"}},

		// A group over zones b and c: both templates are in its first zone.
		{name: "multi-first-zone", selector: map[string]string{"team": "fid-multi", v1.LabelTopologyZone: zones[1]}, fits: true},
		{name: "multi-second-zone", selector: map[string]string{"team": "fid-multi", v1.LabelTopologyZone: zones[2]}},
		{name: "multi-pvc-second-zone", selector: map[string]string{"team": "fid-multi"}, edit: claim("fid-multi-pvc-c")},
		// The zone id: cloud-provider-aws labels the node, CA's template
		// has no such label, Ballast's has it (from the nodes of the zone).
		{name: "zone-id", selector: map[string]string{"team": "fid-zoneid", "topology.k8s.aws/zone-id": zoneIDs[zones[1]]}, failOpen: true},
		{name: "zone-id-other-zone", selector: map[string]string{"team": "fid-zoneid", "topology.k8s.aws/zone-id": zoneIDs[zones[0]]}},
		// Ephemeral storage: the node has its root volume, CA's template
		// only what a resources tag says; without the tag neither admits.
		{name: "eph-untagged", selector: map[string]string{"team": "fid-eph"}, edit: request(v1.ResourceEphemeralStorage, "1Gi")},
		{name: "eph-tagged", selector: map[string]string{"team": "fid-ephtag"}, edit: request(v1.ResourceEphemeralStorage, "10Gi"), fits: true},
		{name: "eph-above-tag", selector: map[string]string{"team": "fid-ephtag"}, edit: request(v1.ResourceEphemeralStorage, "30Gi")},
		// Huge pages: only from a resources tag.
		{name: "hugepages-tagged", selector: map[string]string{"team": "fid-huge"}, edit: request("hugepages-2Mi", "512Mi"), fits: true},
		{name: "hugepages-above-tag", selector: map[string]string{"team": "fid-huge"}, edit: request("hugepages-2Mi", "2Gi")},
		{name: "hugepages-other-size", selector: map[string]string{"team": "fid-huge"}, edit: request("hugepages-1Gi", "1Gi")},
		{name: "hugepages-untagged", selector: map[string]string{"team": "fid-plain"}, edit: request("hugepages-2Mi", "512Mi")},
		// Claims: a bound volume's zone, a WaitForFirstConsumer class's
		// allowed topology (no static predicate of Ballast's: it admits).
		{name: "pvc-bound-zone-b", selector: map[string]string{"team": "fid-plain"}, edit: claim("fid-pvc-b"), fits: true},
		{name: "pvc-bound-zone-c", selector: map[string]string{"team": "fid-plain"}, edit: claim("fid-pvc-c")},
		{name: "pvc-wffc-zone-b", selector: map[string]string{"team": "fid-plain"}, edit: claim("fid-wffc-b"), fits: true},
		{name: "pvc-wffc-zone-c", selector: map[string]string{"team": "fid-plain"}, edit: claim("fid-wffc-c"), failOpen: true},
		// NoExecute and PreferNoSchedule taints from the tags.
		{name: "noexec-untolerated", selector: map[string]string{"team": "fid-noexec"}},
		{name: "noexec-tolerated", selector: map[string]string{"team": "fid-noexec"}, edit: tolerateEffect("dedicated", "fid-ne", v1.TaintEffectNoExecute), fits: true},
		{name: "noexec-any-effect", selector: map[string]string{"team": "fid-noexec"}, edit: tolerateEffect("dedicated", "", ""), fits: true},
		{name: "noexec-tolerated-as-noschedule", selector: map[string]string{"team": "fid-noexec"}, edit: tolerateEffect("dedicated", "fid-ne", v1.TaintEffectNoSchedule)},
		{name: "prefer-untolerated", selector: map[string]string{"team": "fid-prefer"}, fits: true},
	}
	pods := map[string]*v1.Pod{}
	for _, r := range rows {
		pods[r.name] = w.pod(t, "fid-"+r.name, r.selector, r.edit)
	}
	type outcome struct{ parked, triggered, refused, bound, decided bool }
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
			o.parked = o.parked || testenv.ParkedByBallast(p)
			evs := w.caEvents(p.Name)
			o.triggered = o.triggered || evs["TriggeredScaleUp"] != ""
			o.refused = o.refused || evs["NotTriggerScaleUp"] != ""
			o.bound = o.bound || testenv.Bound(p)
			switch {
			case o.triggered || o.bound:
				o.decided = true
			case o.refused && (o.parked || testenv.Unschedulable(p)):
				o.decided = true
			}
			all = all && o.decided
		}
		return all, nil
	})
	for _, r := range rows {
		o := got[r.name]
		o.parked = o.parked || len(w.parkEvents(pods[r.name].Name)) > 0
		scaled := o.triggered || (o.bound && !o.refused)
		evs := w.caEvents(pods[r.name].Name)
		t.Logf("%-30s Ballast parked=%-5v CA scaled up=%-5v %s", r.name, o.parked, scaled, evs["NotTriggerScaleUp"])
		switch {
		case r.failOpen:
			// It may bind to a node another row brought up, before CA
			// says it would not scale up for it (then CA never has to).
			o.refused = o.refused || evs["NotTriggerScaleUp"] != ""
			if o.parked || o.triggered || !(o.refused || o.bound) {
				t.Errorf("pod %s: Ballast parked=%v, CA scaled up=%v, CA refused=%v; want Ballast to admit it and CA to refuse (Ballast's template admits more than CA's) (events %v)",
					r.name, o.parked, o.triggered, o.refused, evs)
			}
		case o.parked == scaled:
			t.Errorf("pod %s: Ballast parked=%v but CA scaled up=%v (events %v)", r.name, o.parked, scaled, evs)
		}
		if !r.failOpen && scaled != r.fits {
			t.Errorf("pod %s: CA scaled up=%v, want %v (events %v)", r.name, scaled, r.fits, evs)
		}
	}
}

// bindZonalVolume creates an EBS CSI volume pinned to zone by key and a
// claim of the same name bound to it, as the PV controller leaves them.
func (w *world) bindZonalVolume(t *testing.T, name, key, zone string) {
	t.Helper()
	class := "ebs-gp3"
	size := v1.ResourceList{v1.ResourceStorage: resource.MustParse("10Gi")}
	pvc, err := w.cs.CoreV1().PersistentVolumeClaims(w.ns).Create(w.ctx, &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name, Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
		Spec: v1.PersistentVolumeClaimSpec{AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce}, StorageClassName: &class,
			VolumeName: name, Resources: v1.VolumeResourceRequirements{Requests: size}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pvc.Status = v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound, AccessModes: pvc.Spec.AccessModes, Capacity: size}
	if _, err = w.cs.CoreV1().PersistentVolumeClaims(w.ns).UpdateStatus(w.ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pv, err := w.cs.CoreV1().PersistentVolumes().Create(w.ctx, &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.PersistentVolumeSpec{
			Capacity: size, AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: v1.PersistentVolumeReclaimDelete, StorageClassName: class,
			PersistentVolumeSource: v1.PersistentVolumeSource{CSI: &v1.CSIPersistentVolumeSource{Driver: "ebs.csi.aws.com", VolumeHandle: "vol-" + name, FSType: "ext4"}},
			ClaimRef:               &v1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: w.ns, Name: name, UID: pvc.UID},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: key, Operator: v1.NodeSelectorOpIn, Values: []string{zone}}}}}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pv.Status = v1.PersistentVolumeStatus{Phase: v1.VolumeBound}
	if _, err = w.cs.CoreV1().PersistentVolumes().UpdateStatus(w.ctx, pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.cs.CoreV1().PersistentVolumeClaims(w.ns).Delete(w.ctx, name, metav1.DeleteOptions{})
		_ = w.cs.CoreV1().PersistentVolumes().Delete(w.ctx, name, metav1.DeleteOptions{})
	})
}

// wffcClaim creates a WaitForFirstConsumer EBS class whose allowed topology
// is zone, and an unbound claim of it, both named name.
func (w *world) wffcClaim(t *testing.T, name, zone string) {
	t.Helper()
	mode := storagev1.VolumeBindingWaitForFirstConsumer
	if _, err := w.cs.StorageV1().StorageClasses().Create(w.ctx, &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: "ebs.csi.aws.com", VolumeBindingMode: &mode,
		AllowedTopologies: []v1.TopologySelectorTerm{{MatchLabelExpressions: []v1.TopologySelectorLabelRequirement{
			{Key: "topology.ebs.csi.aws.com/zone", Values: []string{zone}}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.cs.CoreV1().PersistentVolumeClaims(w.ns).Create(w.ctx, &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name},
		Spec: v1.PersistentVolumeClaimSpec{AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce}, StorageClassName: &name,
			Resources: v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("10Gi")}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.cs.CoreV1().PersistentVolumeClaims(w.ns).Delete(w.ctx, name, metav1.DeleteOptions{})
		_ = w.cs.StorageV1().StorageClasses().Delete(w.ctx, name, metav1.DeleteOptions{})
	})
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

// testScaledToZeroKeepsLastNode (review10c): CA 1.36.1 builds a group's
// template from a good node of the group (Ready for over a minute) and keeps
// that template cached once the group is at zero
// (processors/nodeinfosprovider/mixed_nodeinfos_processor.go). last-a's
// nodes carry the kubelet label workload=last, which its tags do not give.
// After CA scaled last-a up for one pod and down to zero again, CA scales it
// up for a pod selecting workload=last; Ballast must not park that pod.
func testScaledToZeroKeepsLastNode(t *testing.T, w *world) {
	first := w.pod(t, "last-first", map[string]string{"pool": "last"}, nil)
	p := testenv.WaitPod(w.ctx, t, w.cs, first, 120*time.Second, "bound to a node CA added to last-a", testenv.Bound)
	node := p.Spec.NodeName
	// The node becomes a good template node for CA (and one az-balancer
	// remembers) a minute after it turned Ready.
	w.waitFor(node+" Ready for 70s", 150*time.Second, func() (bool, error) {
		n, err := w.cs.CoreV1().Nodes().Get(w.ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == v1.NodeReady && c.Status == v1.ConditionTrue && time.Since(c.LastTransitionTime.Time) > 70*time.Second {
				return n.Labels["workload"] == "last", nil
			}
		}
		return false, nil
	})
	if err := w.cs.CoreV1().Pods(w.ns).Delete(w.ctx, first.Name, *metav1.NewDeleteOptions(0)); err != nil {
		t.Fatal(err)
	}
	w.waitFor("CA to scale last-a down to zero and its node to go", 120*time.Second, func() (bool, error) {
		if _, err := w.cs.CoreV1().Nodes().Get(w.ctx, node, metav1.GetOptions{}); err == nil {
			return false, nil
		}
		ng, err := w.publishedGroup("last-a")
		return err == nil && ng.CurrentSize == 0, nil
	})
	second := w.pod(t, "last-second", map[string]string{"workload": "last"}, nil)
	var parked bool
	w.waitFor("a verdict from Ballast and a scale-up from CA", 120*time.Second, func() (bool, error) {
		got, err := w.cs.CoreV1().Pods(w.ns).Get(w.ctx, second.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		p = got
		parked = parked || testenv.ParkedByBallast(got) || len(w.parkEvents(second.Name)) > 0
		return parked || testenv.Bound(got), nil
	})
	if parked {
		t.Fatalf("FALSE PARK: Ballast parked %s (%v; CA events %v); CA 1.36.1 scales last-a from zero for it with its cached template of the group's last node",
			second.Name, w.parkEvents(second.Name), w.caEvents(second.Name))
	}
	if i, ok := w.emu.Instance(p.Spec.NodeName); !ok || i.Group != "last-a" {
		t.Errorf("%s bound to %s (instance %+v), want a node of last-a", second.Name, p.Spec.NodeName, i)
	}
	if ev := w.caEvents(second.Name)["TriggeredScaleUp"]; !strings.Contains(ev, "last-a") {
		t.Errorf("CA's TriggeredScaleUp event on %s: %q, want last-a named", second.Name, ev)
	}
}

// publishedGroup is the template az-balancer published for a group.
func (w *world) publishedGroup(name string) (*nodegroups.NodeGroup, error) {
	cm, err := w.cs.CoreV1().ConfigMaps(w.ns).Get(w.ctx, nodegroups.DefaultName, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	list, err := nodegroups.Decode(cm.Data)
	if err != nil {
		return nil, err
	}
	for i := range list.NodeGroups {
		if list.NodeGroups[i].Name == name {
			return &list.NodeGroups[i], nil
		}
	}
	return nil, fmt.Errorf("no template for %s", name)
}
