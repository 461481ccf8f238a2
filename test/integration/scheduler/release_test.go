package scheduler

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	testutils "k8s.io/kubernetes/test/integration/util"
	"k8s.io/utils/ptr"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/shapes"
	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// releaseWithin is the promise: a parked pod leaves the parking within a
// second of the change that makes it placeable (the v1.37.2 queue's own
// flush of unschedulable pods takes five minutes).
const releaseWithin = time.Second

// releaseCase parks a pod against the cluster that setup builds, then makes
// the one change that makes it placeable.
type releaseCase struct {
	name string
	// sample and args choose the profile (sample config, HopelessPods args).
	sample string
	args   func(ns string) map[string]any
	// setup creates the cluster objects and returns the pod to park.
	setup func(t *testing.T, testCtx *testutils.TestContext) *v1.Pod
	// change makes the pod placeable.
	change func(t *testing.T, testCtx *testutils.TestContext, pod *v1.Pod)
	// bound: the change makes the pod bindable now (a template only makes
	// it worth an attempt: the scheduler's own verdict follows).
	bound bool
}

func createNodes(t *testing.T, cs kubernetes.Interface, nodes ...*v1.Node) {
	t.Helper()
	for _, n := range nodes {
		if _, err := cs.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// updateNode applies edit to the node (status too when status is true).
func updateNode(t *testing.T, cs kubernetes.Interface, name string, status bool, edit func(*v1.Node)) {
	t.Helper()
	ctx := context.Background()
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	edit(n)
	if status {
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	} else {
		_, err = cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// updatePod reads the pod, edits it and writes it back: through
// pods/resize with resize, else as an update. It returns what the apiserver
// made of it.
func updatePod(t *testing.T, tc *testutils.TestContext, pod *v1.Pod, resize bool, edit func(*v1.Pod)) *v1.Pod {
	t.Helper()
	pods := tc.ClientSet.CoreV1().Pods(pod.Namespace)
	p, err := pods.Get(tc.Ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	edit(p)
	if resize {
		p, err = pods.UpdateResize(tc.Ctx, pod.Name, p, metav1.UpdateOptions{})
	} else {
		p, err = pods.Update(tc.Ctx, p, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func podWith(ns, name string, edit func(*v1.Pod)) *v1.Pod {
	p := makePod(ns, name, "ballast-scheduler", nil, nil)
	if edit != nil {
		edit(p)
	}
	return p
}

// cpuPodOn creates node (a testenv.Node) and returns a pod requesting cpu.
func cpuPodOn(t *testing.T, tc *testutils.TestContext, node, pod, cpu string) *v1.Pod {
	t.Helper()
	createNodes(t, tc.ClientSet, testenv.Node(node, nil, nil))
	return podWith(tc.NS.Name, pod, func(p *v1.Pod) {
		p.Spec.Containers[0].Resources.Requests[v1.ResourceCPU] = resource.MustParse(cpu)
	})
}

// batchPodOnTaintedNode creates node batch-1 of pool batch with
// batchTaint and returns pod name of pool batch with tolerations.
func batchPodOnTaintedNode(t *testing.T, tc *testutils.TestContext, name string, tolerations []v1.Toleration) *v1.Pod {
	t.Helper()
	createNodes(t, tc.ClientSet, testenv.Node("batch-1", map[string]string{"pool": "batch"}, []v1.Taint{batchTaint}))
	return makePod(tc.NS.Name, name, "ballast-scheduler", map[string]string{"pool": "batch"}, tolerations)
}

// cassandraOnAGoneHost creates node ip-10-0-1-1 and binds claim
// data-cassandra-0 to a local volume of host ip-10-0-9-9, which no node is,
// named pv and the test's namespace; the volumes so named after pv and more
// are deleted when the test ends. It returns pod cassandra-0, which mounts
// the claim.
func cassandraOnAGoneHost(t *testing.T, tc *testutils.TestContext, pv string, more ...string) *v1.Pod {
	t.Helper()
	createNodes(t, tc.ClientSet, testenv.Node("ip-10-0-1-1", nil, nil))
	bindLocalVolume(t, tc, "data-cassandra-0", pv+tc.NS.Name, "ip-10-0-9-9")
	t.Cleanup(func() {
		for _, name := range append([]string{pv}, more...) {
			_ = tc.ClientSet.CoreV1().PersistentVolumes().Delete(context.Background(), name+tc.NS.Name, metav1.DeleteOptions{})
		}
	})
	return podWith(tc.NS.Name, "cassandra-0", func(p *v1.Pod) {
		p.Spec.Volumes = []v1.Volume{{Name: "data", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "data-cassandra-0"}}}}
	})
}

func templatesData(t *testing.T, groups ...nodegroups.NodeGroup) map[string]string {
	t.Helper()
	now := time.Now()
	data, err := nodegroups.Encode(&nodegroups.NodeGroupList{GeneratedAt: &now, Source: "test", NodeGroups: groups})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func group(name, pool string) nodegroups.NodeGroup {
	return nodegroups.NodeGroup{Name: name, Zone: "us-east-1a", MaxSize: 5, Labels: map[string]string{"pool": pool},
		Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("8"), v1.ResourceMemory: resource.MustParse("32Gi"), v1.ResourcePods: resource.MustParse("110")}}
}

var batchJobsTaint = v1.Taint{Key: "dedicated", Value: "batchjobs", Effect: v1.TaintEffectNoSchedule}

// TestReleasePaths runs the real v1.37.2 scheduler (its PriorityQueue,
// informers and event handlers) with Ballast's profile against a real
// apiserver, and checks every path by which a parked pod comes back.
func TestReleasePaths(t *testing.T) {
	server := testutils.InitTestAPIServer(t, "release", nil)
	pool := func(p string) map[string]string { return map[string]string{"pool": p} }
	cases := []releaseCase{{
		name: "node added",
		setup: func(t *testing.T, tc *testutils.TestContext) *v1.Pod {
			createNodes(t, tc.ClientSet, testenv.Node("web-1", pool("web"), nil))
			return makePod(tc.NS.Name, "cron", "ballast-scheduler", pool("batch"), wrongToleration)
		},
		change: func(t *testing.T, tc *testutils.TestContext, _ *v1.Pod) {
			createNodes(t, tc.ClientSet, testenv.Node("batch-jobs-1", pool("batch"), []v1.Taint{batchJobsTaint}))
		},
		bound: true,
	}, {
		name: "label added",
		setup: func(t *testing.T, tc *testutils.TestContext) *v1.Pod {
			createNodes(t, tc.ClientSet, testenv.Node("plain-1", nil, nil))
			return makePod(tc.NS.Name, "selector", "ballast-scheduler", pool("batch"), nil)
		},
		change: func(t *testing.T, tc *testutils.TestContext, _ *v1.Pod) {
			updateNode(t, tc.ClientSet, "plain-1", false, func(n *v1.Node) { n.Labels["pool"] = "batch" })
		},
		bound: true,
	}, {
		name: "taint removed",
		setup: func(t *testing.T, tc *testutils.TestContext) *v1.Pod {
			return batchPodOnTaintedNode(t, tc, "untolerated", nil)
		},
		change: func(t *testing.T, tc *testutils.TestContext, _ *v1.Pod) {
			updateNode(t, tc.ClientSet, "batch-1", false, func(n *v1.Node) { n.Spec.Taints = nil })
		},
		bound: true,
	}, {
		name: "uncordoned",
		setup: func(t *testing.T, tc *testutils.TestContext) *v1.Pod {
			n := testenv.Node("cordoned-1", nil, nil)
			n.Spec.Unschedulable = true
			createNodes(t, tc.ClientSet, n)
			return makePod(tc.NS.Name, "waits", "ballast-scheduler", nil, nil)
		},
		change: func(t *testing.T, tc *testutils.TestContext, _ *v1.Pod) {
			updateNode(t, tc.ClientSet, "cordoned-1", false, func(n *v1.Node) { n.Spec.Unschedulable = false })
		},
		bound: true,
	}, {
		name: "allocatable grown",
		setup: func(t *testing.T, tc *testutils.TestContext) *v1.Pod {
			return cpuPodOn(t, tc, "small-1", "six-cpus", "6")
		},
		change: func(t *testing.T, tc *testutils.TestContext, _ *v1.Pod) {
			updateNode(t, tc.ClientSet, "small-1", true, func(n *v1.Node) {
				n.Status.Capacity[v1.ResourceCPU] = resource.MustParse("8")
				n.Status.Allocatable[v1.ResourceCPU] = resource.MustParse("8")
			})
		},
		bound: true,
	}, {
		name: "pod toleration added",
		setup: func(t *testing.T, tc *testutils.TestContext) *v1.Pod {
			return batchPodOnTaintedNode(t, tc, "cron", wrongToleration)
		},
		change: func(t *testing.T, tc *testutils.TestContext, pod *v1.Pod) {
			updatePod(t, tc, pod, false, func(p *v1.Pod) {
				p.Spec.Tolerations = append(p.Spec.Tolerations, v1.Toleration{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "batch", Effect: v1.TaintEffectNoSchedule})
			})
		},
		bound: true,
	}, {
		name: "pod resized down",
		setup: func(t *testing.T, tc *testutils.TestContext) *v1.Pod {
			// Not small-1: the pod bound there by "allocatable grown" outlives
			// its node (no pod GC here) and would fill a new small-1.
			return cpuPodOn(t, tc, "resize-1", "sixty-four-cpus", "64")
		},
		change: func(t *testing.T, tc *testutils.TestContext, pod *v1.Pod) {
			got := updatePod(t, tc, pod, true, func(p *v1.Pod) {
				p.Spec.Containers[0].Resources.Requests[v1.ResourceCPU] = resource.MustParse("1")
			})
			if cpu := got.Spec.Containers[0].Resources.Requests[v1.ResourceCPU]; cpu.Cmp(resource.MustParse("1")) != 0 {
				t.Fatalf("pods/resize left cpu=%s, want 1", cpu.String())
			}
		},
		bound: true,
	}, {
		name: "claim recreated on a live node",
		setup: func(t *testing.T, tc *testutils.TestContext) *v1.Pod {
			return cassandraOnAGoneHost(t, tc, "pv-gone-", "pv-live-")
		},
		change: func(t *testing.T, tc *testutils.TestContext, _ *v1.Pod) {
			// The operator deletes the claim of the lost volume; the
			// StatefulSet controller recreates it, and it binds on a live node.
			ctx, cs, ns := tc.Ctx, tc.ClientSet, tc.NS.Name
			if err := cs.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "data-cassandra-0", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			// No controller runs here to drop the protection finalizer.
			if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, "data-cassandra-0", "application/merge-patch+json",
				[]byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil && !strings.Contains(err.Error(), "not found") {
				t.Fatal(err)
			}
			if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
				_, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data-cassandra-0", metav1.GetOptions{})
				return err != nil, nil
			}); err != nil {
				t.Fatal("claim not gone")
			}
			bindLocalVolume(t, tc, "data-cassandra-0", "pv-live-"+ns, "ip-10-0-1-1")
		},
		bound: true,
	}, {
		name: "identity label names the volume's host",
		setup: func(t *testing.T, tc *testutils.TestContext) *v1.Pod {
			return cassandraOnAGoneHost(t, tc, "pv-relabel-")
		},
		change: func(t *testing.T, tc *testutils.TestContext, _ *v1.Pod) {
			updateNode(t, tc.ClientSet, "ip-10-0-1-1", false, func(n *v1.Node) { n.Labels[v1.LabelHostname] = "ip-10-0-9-9" })
		},
		bound: true,
	}, {
		// An extended resource no node advertises and no DeviceClass maps is
		// hopeless; a DeviceClass that maps it hands it to DynamicResources,
		// so the scheduler decides again (no device here: its own verdict).
		name: "DeviceClass maps the extended resource",
		setup: func(t *testing.T, tc *testutils.TestContext) *v1.Pod {
			createNodes(t, tc.ClientSet, testenv.Node("plain-1", nil, nil))
			return podWith(tc.NS.Name, "fpga-user", func(p *v1.Pod) {
				q := resource.MustParse("1")
				p.Spec.Containers[0].Resources.Requests["example.com/release-fpga"] = q
				if p.Spec.Containers[0].Resources.Limits == nil {
					p.Spec.Containers[0].Resources.Limits = v1.ResourceList{}
				}
				p.Spec.Containers[0].Resources.Limits["example.com/release-fpga"] = q
			})
		},
		change: func(t *testing.T, tc *testutils.TestContext, _ *v1.Pod) {
			dc := &resourceapi.DeviceClass{ObjectMeta: metav1.ObjectMeta{Name: "fpga.release.example.com"},
				Spec: resourceapi.DeviceClassSpec{ExtendedResourceName: ptr.To("example.com/release-fpga")}}
			if _, err := tc.ClientSet.ResourceV1().DeviceClasses().Create(tc.Ctx, dc, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = tc.ClientSet.ResourceV1().DeviceClasses().Delete(context.Background(), dc.Name, metav1.DeleteOptions{})
			})
		},
	}, {
		name:   "node-group template added",
		sample: "autoscaling-profile.yaml",
		args: func(ns string) map[string]any {
			return map[string]any{"autoscaling": true, "nodeGroupsConfigMap": map[string]string{"namespace": ns, "name": "node-groups"}, "maxTemplateAge": "10m"}
		},
		setup: func(t *testing.T, tc *testutils.TestContext) *v1.Pod {
			createNodes(t, tc.ClientSet, testenv.Node("web-1", pool("web"), nil))
			cm := &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: tc.NS.Name, Name: "node-groups"}, Data: templatesData(t, group("web-us-east-1a", "web"))}
			if _, err := tc.ClientSet.CoreV1().ConfigMaps(tc.NS.Name).Create(tc.Ctx, cm, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			return makePod(tc.NS.Name, "trainer", "ballast-scheduler", pool("gpu"), nil)
		},
		change: func(t *testing.T, tc *testutils.TestContext, _ *v1.Pod) {
			cm := &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: tc.NS.Name, Name: "node-groups"},
				Data: templatesData(t, group("web-us-east-1a", "web"), group("gpu-us-east-1a", "gpu"))}
			if _, err := tc.ClientSet.CoreV1().ConfigMaps(tc.NS.Name).Update(tc.Ctx, cm, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			testCtx := testutils.WithNewNamespace(t, server, "release")
			defer testutils.CleanupNodes(testCtx.ClientSet, t)
			pod := c.setup(t, testCtx)
			sample := c.sample
			if sample == "" {
				sample = "secondary-profile.yaml"
			}
			var args map[string]any
			if c.args != nil {
				args = c.args(testCtx.NS.Name)
			}
			startScheduler(t, testCtx, sample, args)
			checkRelease(t, testCtx, pod, c.bound, func() { c.change(t, testCtx, pod) })
		})
	}
}

// checkRelease creates pod, waits until it is parked (in the queue's
// unschedulable pool, with Ballast's condition), applies change, and checks
// that the pod leaves the parking within releaseWithin.
func checkRelease(t *testing.T, testCtx *testutils.TestContext, pod *v1.Pod, wantBound bool, change func()) {
	t.Helper()
	ctx, cs := testCtx.Ctx, testCtx.ClientSet
	pod, err := cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	queue := testCtx.Scheduler.SchedulingQueue
	inParking := func() bool {
		return slices.ContainsFunc(queue.UnschedulablePods(), func(p *v1.Pod) bool { return p.UID == pod.UID })
	}
	waitCondition(ctx, t, testCtx, pod, 20*time.Second, "parked", parkedWith(shapes.MessagePrefix))
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return inParking(), nil
	}); err != nil {
		t.Fatal("the parked pod is not in the queue's unschedulable pool")
	}

	start := time.Now()
	change()
	changed := time.Now()
	// Released: out of the unschedulable pool, or back in it with the
	// scheduler's own verdict (a template makes a pod worth an attempt only).
	released := func(ctx context.Context) (bool, error) {
		if !inParking() {
			return true, nil
		}
		p, err := cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		c := scheduledCondition(p)
		return bound(p) || (c != nil && !strings.HasPrefix(c.Message, shapes.MessagePrefix)), nil
	}
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Millisecond, releaseWithin+(changed.Sub(start)), true, released); err != nil {
		t.Fatalf("the pod was not released within %v of the change", releaseWithin)
	}
	t.Logf("released %v after the change", time.Since(changed))
	if wantBound {
		waitCondition(ctx, t, testCtx, pod, 10*time.Second, "bound after the release", testenv.Bound)
	}
}
