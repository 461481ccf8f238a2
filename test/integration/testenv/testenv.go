// Package testenv holds what the integration tests, the deploy tests and the
// demo share on top of k8s.io/kubernetes/test/integration: Ballast's
// scheduler in process or as a binary, kubeconfigs for the test apiserver,
// local volumes as the static provisioner leaves them, and pod waits.
package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/kubernetes/pkg/scheduler"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	testutils "k8s.io/kubernetes/test/integration/util"

	"github.com/ballast-k8s/ballast/internal/shapes"
	"github.com/ballast-k8s/ballast/plugins"
)

// RepoRoot is the module root.
func RepoRoot() string {
	// go test runs a test in its package's directory: the root is the
	// nearest directory above with go.mod. (runtime.Caller's file names the
	// module path, not a directory, under -trimpath.)
	dir, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			panic("no go.mod above " + dir)
		}
	}
}

// LoadConfig reads a scheduler config (a path relative to the repository)
// through the scheduler's own option parsing, and replaces the HopelessPods
// args when args is not nil.
func LoadConfig(t testing.TB, path string, args map[string]any) *config.KubeSchedulerConfiguration {
	t.Helper()
	cfg, err := options.LoadConfigFromFile(klog.Background(), filepath.Join(RepoRoot(), path))
	if err != nil {
		t.Fatalf("loading %s: %v", path, err)
	}
	if args != nil {
		raw, _ := json.Marshal(args)
		found := false
		for i := range cfg.Profiles {
			for j := range cfg.Profiles[i].PluginConfig {
				if cfg.Profiles[i].PluginConfig[j].Name == "HopelessPods" {
					cfg.Profiles[i].PluginConfig[j].Args = &k8sruntime.Unknown{Raw: raw, ContentType: k8sruntime.ContentTypeJSON}
					found = true
				}
			}
		}
		if !found {
			t.Fatalf("%s configures no HopelessPods args to replace", path)
		}
	}
	return cfg
}

// StartScheduler runs, until the test ends, a scheduler with Ballast's
// plugins and the profiles of the config at path (see LoadConfig), with a
// one-second backoff so that tests see requeues quickly.
func StartScheduler(t testing.TB, testCtx *testutils.TestContext, path string, args map[string]any) {
	t.Helper()
	StartSchedulerWithProfiles(t, testCtx, LoadConfig(t, path, args).Profiles...)
}

// StartSchedulerWithProfiles is StartScheduler with the profiles given.
func StartSchedulerWithProfiles(t testing.TB, testCtx *testutils.TestContext, profiles ...config.KubeSchedulerProfile) {
	t.Helper()
	tt, ok := t.(*testing.T)
	if !ok {
		t.Fatal("StartScheduler needs a *testing.T")
	}
	testutils.InitTestSchedulerWithOptions(tt, testCtx, 0,
		scheduler.WithProfiles(profiles...),
		scheduler.WithFrameworkOutOfTreeRegistry(plugins.Registry()),
		scheduler.WithPodInitialBackoffSeconds(1),
		scheduler.WithPodMaxBackoffSeconds(1))
	testutils.SyncSchedulerInformerFactory(testCtx)
	go testCtx.Scheduler.Run(testCtx.SchedulerCtx)
	t.Cleanup(testCtx.SchedulerCloseFn)
}

// Binary returns the binary of cmd/<name>: the one named by the environment
// variable env (make sets it to bin/<name>), else a fresh build.
func Binary(t testing.TB, name, env string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", out, "./cmd/"+name)
	cmd.Dir = RepoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", name, err, b)
	}
	return out
}

// Kubeconfig writes a kubeconfig for cfg; user, when not nil, replaces the
// credentials (e.g. to impersonate a service account).
func Kubeconfig(t testing.TB, cfg *rest.Config, user *clientcmdapi.AuthInfo) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthority: cfg.CAFile, CertificateAuthorityData: cfg.CAData, InsecureSkipTLSVerify: cfg.Insecure}
	if user == nil {
		user = &clientcmdapi.AuthInfo{Token: cfg.BearerToken, ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	}
	kc.AuthInfos["test"] = user
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// FreePort returns a loopback TCP port nobody listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// LocalStorageClass is the class of the volumes BindLocalVolume makes.
const LocalStorageClass = "local-storage"

// BindLocalVolume creates a static local PV pinned to host and a claim
// bound to it, as the local static provisioner and the PV controller leave
// them (claim annotated bind-completed, both Bound).
func BindLocalVolume(ctx context.Context, t testing.TB, cs kubernetes.Interface, ns, claim, pvName, host string) (*v1.PersistentVolumeClaim, *v1.PersistentVolume) {
	t.Helper()
	class := LocalStorageClass
	size := v1.ResourceList{v1.ResourceStorage: resource.MustParse("10Gi")}
	pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: claim, Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
		Spec: v1.PersistentVolumeClaimSpec{AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce}, StorageClassName: &class,
			VolumeName: pvName, Resources: v1.VolumeResourceRequirements{Requests: size}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pvc.Status = v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound, AccessModes: pvc.Spec.AccessModes, Capacity: size}
	if pvc, err = cs.CoreV1().PersistentVolumeClaims(ns).UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pv, err := cs.CoreV1().PersistentVolumes().Create(ctx, &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName},
		Spec: v1.PersistentVolumeSpec{
			Capacity: size, AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: v1.PersistentVolumeReclaimRetain, StorageClassName: class,
			PersistentVolumeSource: v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: "/mnt/disks/ssd0"}},
			ClaimRef:               &v1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: ns, Name: claim, UID: pvc.UID},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{host}}}}}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pv.Status = v1.PersistentVolumeStatus{Phase: v1.VolumeBound}
	if pv, err = cs.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return pvc, pv
}

// ScheduledCondition returns the pod's PodScheduled condition, or nil.
func ScheduledCondition(p *v1.Pod) *v1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == v1.PodScheduled {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// Bound reports whether the pod has a node.
func Bound(p *v1.Pod) bool { return p.Spec.NodeName != "" }

// ParkedWith matches a pod whose PodScheduled=False message contains substr.
func ParkedWith(substr string) func(*v1.Pod) bool {
	return func(p *v1.Pod) bool {
		c := ScheduledCondition(p)
		return c != nil && c.Status == v1.ConditionFalse && strings.Contains(c.Message, substr)
	}
}

// ParkedByBallast matches a pod whose PodScheduled=False message is one of
// Ballast's (it starts with shapes.MessagePrefix).
func ParkedByBallast(p *v1.Pod) bool {
	c := ScheduledCondition(p)
	return c != nil && c.Status == v1.ConditionFalse && strings.HasPrefix(c.Message, shapes.MessagePrefix)
}

// Unschedulable matches a pod with PodScheduled=False, whoever wrote it.
func Unschedulable(p *v1.Pod) bool {
	c := ScheduledCondition(p)
	return c != nil && c.Status == v1.ConditionFalse
}

// Describe renders a pod's node and conditions for a failure message.
func Describe(p *v1.Pod) string {
	if p == nil {
		return "<none>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "node=%q", p.Spec.NodeName)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, " %s=%s(%s: %s)", c.Type, c.Status, c.Reason, c.Message)
	}
	return b.String()
}

// WaitPod polls the pod until ok holds, and fails the test with its last
// state after timeout.
func WaitPod(ctx context.Context, t testing.TB, cs kubernetes.Interface, pod *v1.Pod, timeout time.Duration, what string, ok func(*v1.Pod) bool) *v1.Pod {
	t.Helper()
	var last *v1.Pod
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return ok(p), nil
	})
	if err != nil {
		t.Fatalf("pod %s: waiting for %s: %v; last status: %s", pod.Name, what, err, Describe(last))
	}
	return last
}

// NeverPod polls the pod for d and fails the test as soon as bad holds: what
// must not happen while the scheduler goes on trying (a pod parked after a
// later attempt).
func NeverPod(ctx context.Context, t testing.TB, cs kubernetes.Interface, pod *v1.Pod, d time.Duration, what string, bad func(*v1.Pod) bool) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		p, err := cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("pod %s: %v", pod.Name, err)
		}
		if bad(p) {
			t.Fatalf("pod %s: %s: %s", pod.Name, what, Describe(p))
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s: %v while checking that it is never %s", pod.Name, ctx.Err(), what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Node is a ready node with 4 CPUs, 32Gi and 110 pods, the hostname label,
// labels and taints.
func Node(name string, labels map[string]string, taints []v1.Taint) *v1.Node {
	l := map[string]string{v1.LabelHostname: name}
	for k, v := range labels {
		l[k] = v
	}
	alloc := v1.ResourceList{v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("32Gi"), v1.ResourcePods: resource.MustParse("110")}
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
		Spec:       v1.NodeSpec{Taints: taints},
		Status: v1.NodeStatus{Capacity: alloc, Allocatable: alloc,
			Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}},
	}
}

// Pod is a pause pod requesting 100m CPU and 100Mi, for schedulerName (empty:
// the default scheduler), with a node selector and tolerations.
func Pod(ns, name, schedulerName string, selector map[string]string, tolerations []v1.Toleration) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.PodSpec{
			SchedulerName: schedulerName,
			NodeSelector:  selector,
			Tolerations:   tolerations,
			Containers: []v1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10",
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m"), v1.ResourceMemory: resource.MustParse("100Mi")}}}},
		},
	}
}
