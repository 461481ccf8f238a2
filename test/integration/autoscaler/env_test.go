//go:build e2e

package autoscaler

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	testutils "k8s.io/kubernetes/test/integration/util"
	"k8s.io/utils/clock"
	"sigs.k8s.io/yaml"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	ballastaws "github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/balancer"
	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

const (
	// cluster is the name in the auto-discovery tags of CA and az-balancer.
	cluster       = "e2e"
	region        = "us-east-1"
	schedulerName = "ballast-scheduler"

	// cluster-autoscaler's node-template tags (its AWS provider's README).
	tagLabel    = "k8s.io/cluster-autoscaler/node-template/label/"
	tagTaint    = "k8s.io/cluster-autoscaler/node-template/taint/"
	tagResource = "k8s.io/cluster-autoscaler/node-template/resources/"
	// tagKubeletLabel stands for a kubelet --node-labels flag in the launch
	// template's user data: the emulated kubelet registers the group's nodes
	// with the label; CA and az-balancer read nothing of this tag.
	tagKubeletLabel = "e2e.ballast.invalid/kubelet-node-label/"

	// caBinEnv overrides the binary's path; make sets it.
	caBinEnv = "BALLAST_CLUSTER_AUTOSCALER_BIN"
)

var zones = []string{"us-east-1a", "us-east-1b", "us-east-1c"}

// caBinary is bin/cluster-autoscaler. Missing is a failure, not a skip: the
// e2e target builds it.
func caBinary(t *testing.T) string {
	t.Helper()
	p := os.Getenv(caBinEnv)
	if p == "" {
		p = filepath.Join(testenv.RepoRoot(), "bin", "cluster-autoscaler")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no cluster-autoscaler binary at %s (%v): build it with `make cluster-autoscaler`, or run `make e2e`", p, err)
	}
	return p
}

// world is one apiserver, one emulator, one of each program, shared by the
// scenarios of the package (CA refreshes its groups only every 60 s, so every
// group of every scenario exists before CA starts).
type world struct {
	t       *testing.T
	ctx     context.Context
	testCtx *testutils.TestContext
	cs      clientset.Interface
	ns      string
	emu     *awstest.Server
	ca      *caProcess
	bin     string
	// stopBalancer stops az-balancer and waits for its loop to end.
	stopBalancer func()
}

// caTags are the auto-discovery tags plus extra.
func caTags(extra map[string]string) map[string]string {
	tags := map[string]string{"k8s.io/cluster-autoscaler/enabled": "true", "k8s.io/cluster-autoscaler/" + cluster: "owned"}
	for k, v := range extra {
		tags[k] = v
	}
	return tags
}

// newWorld starts everything: setup runs once the nodes can appear and before
// az-balancer starts, ready after its first publication and before CA starts.
func newWorld(t *testing.T, bin string, groups []awstest.GroupSpec, setup, ready func(*world)) *world {
	t.Helper()
	server := testutils.InitTestAPIServer(t, "autoscaler", nil)
	testCtx := testutils.WithNewNamespace(t, server, "e2e")
	w := &world{t: t, ctx: testCtx.Ctx, testCtx: testCtx, cs: testCtx.ClientSet, ns: testCtx.NS.Name}
	w.emu = awstest.NewServer(nil) // real time: CA and the balancer read it as AWS
	t.Cleanup(w.emu.Close)
	for _, g := range groups {
		g.Tags = caTags(g.Tags)
		w.emu.CreateGroup(g)
	}
	ctx, cancel := context.WithCancel(w.ctx)
	t.Cleanup(cancel)
	go w.kubelet(ctx)
	if setup != nil {
		setup(w)
	}

	w.startBalancer()
	w.waitFor("az-balancer publishes every group", 60*time.Second, func() (bool, error) {
		cm, err := w.cs.CoreV1().ConfigMaps(w.ns).Get(w.ctx, nodegroups.DefaultName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		list, err := nodegroups.Decode(cm.Data)
		return err == nil && len(list.NodeGroups) == len(groups), nil
	})

	// Ballast's scheduler, autoscaling mode, templates from az-balancer.
	testenv.StartScheduler(t, testCtx, filepath.Join("config", "samples", "autoscaling-profile.yaml"), map[string]any{
		"autoscaling": true, "maxTemplateAge": "10m",
		"nodeGroupsConfigMap": map[string]string{"namespace": w.ns, "name": nodegroups.DefaultName}})

	if ready != nil {
		ready(w)
	}
	w.bin = bin
	w.ca = startCA(t, bin, testCtx, w.emu.URL)
	return w
}

// startBalancer starts az-balancer, its loop every 2 s, until stopBalancer.
func (w *world) startBalancer() {
	t := w.t
	ctx, cancel := context.WithCancel(w.ctx)
	t.Cleanup(cancel)
	cloud, err := ballastaws.New(ctx, w.emu.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&corev1client.EventSinkImpl{Interface: w.cs.CoreV1().Events("")})
	t.Cleanup(broadcaster.Shutdown)
	recorder := broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: balancer.Source})
	b := balancer.New(w.cs, cloud, recorder, clock.RealClock{}, balancer.Options{
		Selector: ballastaws.AutoDiscovery(cluster), ConfigMapNamespace: w.ns, ConfigMapName: nodegroups.DefaultName,
		HeartbeatTimeout: 5 * time.Minute,
	}, prometheus.NewRegistry())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx, 2*time.Second) }()
	w.stopBalancer = func() { cancel(); <-done }
}

// waitFor polls cond every 200 ms until it holds or timeout passes.
func (w *world) waitFor(what string, timeout time.Duration, cond func() (bool, error)) {
	w.t.Helper()
	if err := wait.PollUntilContextTimeout(w.ctx, 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) { return cond() }); err != nil {
		w.t.Fatalf("waiting for %s: %v", what, err)
	}
}

// How a new instance becomes a node that takes pods, in the order of a real
// EKS node (times scaled down about twentyfold so that a scenario takes
// seconds, not minutes; the order and the states are what matter):
//
//  1. bootDelay after the instance runs, kubelet registers the Node: its
//     own labels (hostname, os, arch, --node-labels), --register-with-taints
//     plus node.cloudprovider.kubernetes.io/uninitialized=true:NoSchedule
//     (kubelet with an external cloud provider, pkg/kubelet
//     kubelet_node_status.go initialNode), node.kubernetes.io/not-ready:
//     NoSchedule (the NodeTaint admission plugin), Ready=False
//     (KubeletNotReady: the runtime's network is not up yet). No
//     spec.providerID yet, no zone or instance-type labels.
//  2. Right after, the node lifecycle controller adds
//     node.kubernetes.io/not-ready:NoExecute (taint-based eviction; its
//     NotReadyTaintTemplate).
//  3. initDelay later, the cloud node controller (cloud-provider-aws)
//     initializes the node: spec.providerID aws:///<zone>/<id>, the
//     instance-type, zone, region and zone-id labels, and removes the
//     uninitialized taint.
//  4. readyDelay later, kubelet reports Ready=True (and the EBS CSI node
//     plugin's topology label appears); the node lifecycle controller then
//     removes both not-ready taints, one tick later.
const (
	bootDelay  = 2 * time.Second
	initDelay  = 1 * time.Second
	readyDelay = 2 * time.Second

	taintUninitialized = "node.cloudprovider.kubernetes.io/uninitialized"
)

// zoneIDs are the zone ids of this account's zones (the mapping of names to
// ids differs per account; cloud-provider-aws labels nodes with the id).
var zoneIDs = map[string]string{"us-east-1a": "use1-az4", "us-east-1b": "use1-az6", "us-east-1c": "use1-az1"}

// nodePhase is how far a node got in the steps above.
type nodePhase int

const (
	phaseNone nodePhase = iota
	phaseRegistered
	phaseNoExecute
	phaseInitialized
	phaseReady
	phaseUntainted
)

type nodeState struct {
	phase nodePhase
	at    time.Time // when phase was reached
}

// kubelet does what kubelet, the node lifecycle controller and the cloud
// node controller do for each instance the emulator runs, step by step as
// above: a Node named after the instance, with the well-known labels, the
// group's node-template labels and taints (kubelet's --node-labels and
// --register-with-taints, as the tags advertise them) and the capacity of
// the instance type with kubelet's reservation; and it deletes the Node once
// its instance is terminated.
func (w *world) kubelet(ctx context.Context) {
	catalog := map[string]awstest.InstanceType{}
	for _, it := range awstest.DefaultInstanceTypes {
		catalog[it.Name] = it
	}
	seen := map[string]time.Time{} // first seen running
	nodes := map[string]*nodeState{}
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		now := time.Now()
		for _, i := range w.emu.AllInstances() {
			st := nodes[i.ID]
			switch {
			case i.EC2State == "running" && i.Group != "":
				if _, ok := seen[i.ID]; !ok {
					seen[i.ID] = now
				}
				if st == nil {
					st = &nodeState{}
					nodes[i.ID] = st
				}
				if next, err := w.advance(ctx, i, st, seen[i.ID], now, catalog); err == nil && next != st.phase {
					st.phase, st.at = next, now
				}
			case i.EC2State == "terminated" && st != nil:
				err := w.cs.CoreV1().Nodes().Delete(ctx, i.ID, metav1.DeleteOptions{})
				if err == nil || apierrors.IsNotFound(err) {
					delete(nodes, i.ID)
				}
			}
		}
	}, 200*time.Millisecond)
}

// advance takes the node of instance i one step further when its time has
// come, and returns the phase it is in.
func (w *world) advance(ctx context.Context, i awstest.Instance, st *nodeState, running, now time.Time, catalog map[string]awstest.InstanceType) (nodePhase, error) {
	nodes := w.cs.CoreV1().Nodes()
	update := func(edit func(*v1.Node), status bool) error {
		n, err := nodes.Get(ctx, i.ID, metav1.GetOptions{})
		if err != nil {
			return err
		}
		edit(n)
		if status {
			_, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{})
		} else {
			_, err = nodes.Update(ctx, n, metav1.UpdateOptions{})
		}
		return err
	}
	switch st.phase {
	case phaseNone:
		if now.Sub(running) < bootDelay {
			return st.phase, nil
		}
		n, err := nodeFor(i, catalog[i.InstanceType], w.groupTags(i.Group))
		if err != nil {
			return st.phase, err
		}
		if _, err = nodes.Create(ctx, n, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return st.phase, err
		}
		return phaseRegistered, nil
	case phaseRegistered:
		return phaseNoExecute, update(func(n *v1.Node) {
			n.Spec.Taints = append(n.Spec.Taints, v1.Taint{Key: v1.TaintNodeNotReady, Effect: v1.TaintEffectNoExecute, TimeAdded: ptrTime(metav1.Now())})
		}, false)
	case phaseNoExecute:
		if now.Sub(st.at) < initDelay {
			return st.phase, nil
		}
		return phaseInitialized, update(func(n *v1.Node) { initialize(n, i) }, false)
	case phaseInitialized:
		if now.Sub(st.at) < readyDelay {
			return st.phase, nil
		}
		err := update(func(n *v1.Node) {
			n.Labels["topology.ebs.csi.aws.com/zone"] = i.Zone
		}, false)
		if err == nil {
			err = update(func(n *v1.Node) {
				n.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady",
					Message: "kubelet is posting ready status", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
			}, true)
		}
		return phaseReady, err
	case phaseReady:
		return phaseUntainted, update(func(n *v1.Node) {
			n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, func(t v1.Taint) bool { return t.Key == v1.TaintNodeNotReady })
			if len(n.Spec.Taints) == 0 {
				n.Spec.Taints = nil
			}
		}, false)
	}
	return st.phase, nil
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }

func (w *world) groupTags(name string) map[string]string {
	g, _ := w.emu.Group(name)
	return g.Tags
}

// nodeFor builds the Node of an instance as kubelet registers it.
func nodeFor(i awstest.Instance, it awstest.InstanceType, tags map[string]string) (*v1.Node, error) {
	if it.Name == "" {
		return nil, fmt.Errorf("instance type %q is not in the catalog", i.InstanceType)
	}
	t := ballastaws.InstanceType{Name: it.Name, VCPU: it.VCPU, MemoryMiB: it.MemoryMiB, Architectures: []string{it.Architecture}, NvidiaGPUs: it.NvidiaGPUs}
	arch := t.KubeArch()
	labels := map[string]string{
		v1.LabelHostname: i.ID, v1.LabelOSStable: "linux", v1.LabelArchStable: arch,
		"beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch,
	}
	taints := []v1.Taint{
		{Key: taintUninitialized, Value: "true", Effect: v1.TaintEffectNoSchedule},
		{Key: v1.TaintNodeNotReady, Effect: v1.TaintEffectNoSchedule},
	}
	for k, v := range tags {
		switch {
		case strings.HasPrefix(k, tagLabel):
			labels[strings.TrimPrefix(k, tagLabel)] = v
		case strings.HasPrefix(k, tagKubeletLabel):
			labels[strings.TrimPrefix(k, tagKubeletLabel)] = v
		case strings.HasPrefix(k, tagTaint):
			val, effect, _ := strings.Cut(v, ":")
			taints = append(taints, v1.Taint{Key: strings.TrimPrefix(k, tagTaint), Value: val, Effect: v1.TaintEffect(effect)})
		}
	}
	// What kubelet reports: the instance type's CPU and memory, the root
	// volume as ephemeral storage (20 GiB, the EKS default; kubelet's
	// default eviction threshold nodefs.available<10% held back), and the
	// huge page sizes the kernel supports, none pre-allocated.
	capacity := v1.ResourceList{
		v1.ResourceCPU:              *resource.NewQuantity(int64(it.VCPU), resource.DecimalSI),
		v1.ResourceMemory:           *resource.NewQuantity(it.MemoryMiB*1024*1024, resource.BinarySI),
		v1.ResourcePods:             resource.MustParse("110"),
		v1.ResourceEphemeralStorage: resource.MustParse("20Gi"),
		"hugepages-2Mi":             resource.MustParse("0"),
		"hugepages-1Gi":             resource.MustParse("0"),
	}
	if it.NvidiaGPUs > 0 {
		capacity["nvidia.com/gpu"] = *resource.NewQuantity(int64(it.NvidiaGPUs), resource.DecimalSI)
	}
	allocatable := t.Allocatable()
	for _, r := range []v1.ResourceName{v1.ResourcePods, "hugepages-2Mi", "hugepages-1Gi"} {
		allocatable[r] = capacity[r]
	}
	allocatable[v1.ResourceEphemeralStorage] = resource.MustParse("18Gi")
	// Huge pages the group's user data pre-allocates, as its resources tags
	// advertise them.
	for k, v := range tags {
		if name, ok := strings.CutPrefix(k, tagResource); ok && strings.HasPrefix(name, v1.ResourceHugePagesPrefix) {
			capacity[v1.ResourceName(name)] = resource.MustParse(v)
			allocatable[v1.ResourceName(name)] = resource.MustParse(v)
		}
	}
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: i.ID, Labels: labels},
		Spec:       v1.NodeSpec{Taints: taints},
		Status: v1.NodeStatus{Capacity: capacity, Allocatable: allocatable,
			Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionFalse, Reason: "KubeletNotReady",
				Message: "container runtime network not ready: NetworkReady=false", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}},
	}, nil
}

// initialize is the cloud node controller's step: the provider ID, the
// cloud's labels, the uninitialized taint gone.
func initialize(n *v1.Node, i awstest.Instance) {
	zone := i.Zone
	reg := strings.TrimRight(zone, "abcdefghijklmnopqrstuvwxyz")
	n.Spec.ProviderID = fmt.Sprintf("aws:///%s/%s", zone, i.ID)
	for k, v := range map[string]string{
		v1.LabelInstanceTypeStable: i.InstanceType, v1.LabelInstanceType: i.InstanceType,
		v1.LabelTopologyZone: zone, v1.LabelTopologyRegion: reg,
		v1.LabelFailureDomainBetaZone: zone, v1.LabelFailureDomainBetaRegion: reg,
		"topology.k8s.aws/zone-id": zoneIDs[zone],
	} {
		n.Labels[k] = v
	}
	n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, func(t v1.Taint) bool { return t.Key == taintUninitialized })
}

// caProcess is cluster-autoscaler running as a subprocess; its log is kept
// for the assertions and shown when the test fails.
type caProcess struct {
	cmd      *exec.Cmd
	mu       sync.Mutex
	out      bytes.Buffer
	done     chan error
	stopOnce sync.Once
}

// stop kills cluster-autoscaler and waits for it to exit.
func (p *caProcess) stop() {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Kill()
		err := <-p.done
		p.done <- err
	})
}

func (p *caProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Log returns CA's log so far.
func (p *caProcess) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// caFlags are the flags of the shipped manifest
// (deploy/az-balancer/cluster-autoscaler/deployment.yaml), pointed at this
// cluster, plus what a test must add: endpoints and credentials, no leader
// election, and timings shortened so that a scenario takes seconds.
func caFlags(t *testing.T, kubeconfig, cloudConfig string, port int) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "deploy", "az-balancer", "cluster-autoscaler", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := yaml.Unmarshal(raw, &d); err != nil {
		t.Fatalf("the shipped cluster-autoscaler manifest: %v", err)
	}
	var shipped []string
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "cluster-autoscaler" && len(c.Command) > 1 {
			shipped = append(c.Command[1:], c.Args...)
		}
	}
	if len(shipped) == 0 {
		t.Fatal("the shipped manifest has no cluster-autoscaler command")
	}
	flags := []string{}
	for _, f := range shipped {
		flags = append(flags, strings.ReplaceAll(f, "k8s.io/cluster-autoscaler/my-cluster", "k8s.io/cluster-autoscaler/"+cluster))
	}
	if !slices.Contains(flags, "--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/"+cluster) {
		t.Fatalf("the shipped manifest's auto-discovery is not the one az-balancer uses: %v", shipped)
	}
	return append(flags,
		"--cloud-config="+cloudConfig, "--kubeconfig="+kubeconfig, "--aws-use-static-instance-list=true",
		"--leader-elect=false", fmt.Sprintf("--address=127.0.0.1:%d", port),
		"--scan-interval=1s", "--scale-down-delay-after-add=0s", "--scale-down-delay-after-delete=0s",
		"--scale-down-delay-after-failure=0s", "--scale-down-unneeded-time=5s", "--scale-down-unready-time=5s",
		"--node-delete-delay-after-taint=0s", "--max-node-provision-time=2m", "--max-graceful-termination-sec=5",
		// A node found unremovable (a pod on it) is looked at again after
		// 10s, not 5m: review10c's step empties a node and waits for CA to
		// scale its group to zero.
		"--unremovable-node-recheck-timeout=10s",
		"--v=4",
	)
}

func startCA(t *testing.T, bin string, testCtx *testutils.TestContext, endpoint string) *caProcess {
	t.Helper()
	dir := t.TempDir()
	cloudConfig := filepath.Join(dir, "cloud-config")
	cfg := "[Global]\n"
	for n, svc := range []string{"autoscaling", "ec2", "eks"} { // eks: DescribeNodegroup of managed node groups (eks_test.go)
		cfg += fmt.Sprintf("\n[ServiceOverride %q]\nService = %s\nRegion = %s\nURL = %s\nSigningRegion = %s\n", fmt.Sprint(n+1), svc, region, endpoint, region)
	}
	if err := os.WriteFile(cloudConfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	kubeconfig := testenv.Kubeconfig(t, testCtx.KubeConfig, nil)
	p := &caProcess{done: make(chan error, 1)}
	p.cmd = exec.Command(bin, caFlags(t, kubeconfig, cloudConfig, testenv.FreePort(t))...)
	p.cmd.Env = append(os.Environ(), "AWS_REGION="+region, "AWS_ACCESS_KEY_ID=AKIDCLUSTERAUTOSCALER", "AWS_SECRET_ACCESS_KEY=ca",
		"AWS_EC2_METADATA_DISABLED=true")
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("cluster-autoscaler log (last 40000 bytes):\n%s", tail(p.Log(), 40000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// waitLog waits until CA's log contains every one of substrs on one line,
// failing fast when CA exits.
func (w *world) waitLog(what string, timeout time.Duration, substrs ...string) string {
	w.t.Helper()
	var found string
	w.waitFor(what+" in cluster-autoscaler's log", timeout, func() (bool, error) {
		select {
		case err := <-w.ca.done:
			w.ca.done <- err
			return false, fmt.Errorf("cluster-autoscaler exited: %v", err)
		default:
		}
		for _, line := range strings.Split(w.ca.Log(), "\n") {
			all := true
			for _, s := range substrs {
				all = all && strings.Contains(line, s)
			}
			if all {
				found = line
				return true, nil
			}
		}
		return false, nil
	})
	return found
}
