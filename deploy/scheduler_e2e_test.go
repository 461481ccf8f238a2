package deploy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// runDeployedScheduler runs bin/scheduler with the config of the rendered
// ConfigMap, leader election as shipped, and nothing but the RBAC of
// scheduler-secondary: every API call is made as its service account. It
// returns the secure port.
func runDeployedScheduler(ctx context.Context, t *testing.T, cs kubernetes.Interface, cfg *rest.Config, objs []*unstructured.Unstructured) int {
	t.Helper()
	sa := "system:serviceaccount:kube-system:" + find(t, objs, "ServiceAccount", "").GetName()
	kubeconfig := testenv.Kubeconfig(t, cfg, &clientcmdapi.AuthInfo{
		Token: cfg.BearerToken, ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData,
		Impersonate:       sa,
		ImpersonateGroups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
	})
	var doc map[string]any
	cm := find(t, objs, "ConfigMap", "")
	data, _, _ := unstructured.NestedString(cm.Object, "data", "config.yaml")
	if err := yaml.Unmarshal([]byte(data), &doc); err != nil {
		t.Fatal(err)
	}
	doc["clientConnection"] = map[string]any{"kubeconfig": kubeconfig} // in-cluster config in the Deployment
	raw, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(config, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	out := &bytes.Buffer{}
	cmd := exec.Command(testenv.Binary(t, "scheduler", "BALLAST_SCHEDULER_BIN"), "--config="+config, "--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port),
		"--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			s := out.String()
			t.Logf("scheduler output (tail):\n%s", s[max(0, len(s)-6000):])
		}
	})

	// The probes of the Deployment: HTTPS, no credentials.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed serving cert, as in the pod
	for _, path := range []string{"/livez", "/readyz"} {
		waitFor(ctx, t, "GET "+path+" = 200 without credentials", func() (bool, error) {
			select {
			case err := <-done:
				done <- err
				return false, fmt.Errorf("scheduler exited: %v", err)
			default:
			}
			resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d%s", port, path))
			if err != nil {
				return false, nil
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		})
	}
	// The lease of the config, taken as the service account.
	le, _ := doc["leaderElection"].(map[string]any)
	ns, _ := le["resourceNamespace"].(string)
	name, _ := le["resourceName"].(string)
	waitFor(ctx, t, "the scheduler to take lease "+ns+"/"+name, func() (bool, error) {
		l, err := cs.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" && *l.Spec.HolderIdentity != "test", nil
	})
	return port
}

// schedulesWithDeployedRBAC: an ordinary pod is bound, a hopeless one is
// parked with its condition written, both as the service account.
func schedulesWithDeployedRBAC(ctx context.Context, t *testing.T, cs kubernetes.Interface, schedulerName string) {
	t.Helper()
	node := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "worker-1", Labels: map[string]string{"kubernetes.io/hostname": "worker-1", "pool": "web"}},
		Status: v1.NodeStatus{
			Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("16Gi"), v1.ResourcePods: resource.MustParse("110")},
			Capacity:    v1.ResourceList{v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("16Gi"), v1.ResourcePods: resource.MustParse("110")},
			Conditions:  []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}},
		},
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := func(name string, selector map[string]string) *v1.Pod {
		return &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: v1.PodSpec{SchedulerName: schedulerName, NodeSelector: selector, Containers: []v1.Container{{
				Name: "c", Image: "registry.k8s.io/pause:3.10",
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m")}},
			}}},
		}
	}
	for _, p := range []*v1.Pod{pod("web", map[string]string{"pool": "web"}), pod("nowhere", map[string]string{"pool": "gpu"})} {
		if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(ctx, t, "pod web to be bound", func() (bool, error) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
		return err == nil && p.Spec.NodeName == "worker-1", nil
	})
	waitFor(ctx, t, "pod nowhere to be parked as hopeless", func() (bool, error) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "nowhere", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range p.Status.Conditions {
			if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && strings.HasPrefix(c.Message, "hopeless: ") {
				return true, nil
			}
		}
		return false, nil
	})
}
