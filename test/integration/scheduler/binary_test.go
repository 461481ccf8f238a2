package scheduler

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	testutils "k8s.io/kubernetes/test/integration/util"
	"sigs.k8s.io/yaml"

	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// sampleFor copies a sample config, pointed at kubeconfig, without leader
// election, with edit applied to the decoded YAML.
func sampleFor(t *testing.T, sample, kubeconfig string, edit func(map[string]any)) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "samples", sample))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["clientConnection"] = map[string]any{"kubeconfig": kubeconfig}
	doc["leaderElection"] = map[string]any{"leaderElect": false}
	if edit != nil {
		edit(doc)
	}
	out, _ := yaml.Marshal(doc)
	path := filepath.Join(t.TempDir(), sample)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type process struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan error
	port int
}

func runScheduler(t *testing.T, bin, config string) *process {
	t.Helper()
	p := &process{out: &bytes.Buffer{}, done: make(chan error, 1), port: testenv.FreePort(t)}
	p.cmd = exec.Command(bin, "--config", config, "--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", p.port),
		"--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("scheduler output:\n%s", tail(p.out.String(), 4000))
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

func (p *process) metrics(t *testing.T) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	var body string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/metrics", p.port))
		if err != nil {
			return false, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("scheduler /metrics: %v (%s)", err, tail(body, 300))
	}
	return body
}

func TestSchedulerBinary(t *testing.T) {
	server := testutils.InitTestAPIServer(t, "binary", nil)
	bin := testenv.Binary(t, "scheduler", "BALLAST_SCHEDULER_BIN")
	kubeconfig := testenv.Kubeconfig(t, server.KubeConfig, nil)
	ctx, cs := server.Ctx, server.ClientSet
	defer testutils.CleanupNodes(cs, t)
	for _, n := range []*v1.Node{
		testenv.Node("web-1", map[string]string{"pool": "web"}, nil),
		testenv.Node("batch-1", map[string]string{"pool": "batch"}, []v1.Taint{batchTaint}),
	} {
		if _, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("secondary profile", func(t *testing.T) {
		testCtx := testutils.WithNewNamespace(t, server, "secondary")
		ns := testCtx.NS.Name
		p := runScheduler(t, bin, sampleFor(t, "secondary-profile.yaml", kubeconfig, nil))
		ok, _ := cs.CoreV1().Pods(ns).Create(ctx, makePod(ns, "web", "ballast-scheduler", map[string]string{"pool": "web"}, nil), metav1.CreateOptions{})
		cron, _ := cs.CoreV1().Pods(ns).Create(ctx, makePod(ns, "report", "ballast-scheduler", map[string]string{"pool": "batch"}, wrongToleration), metav1.CreateOptions{})
		other, _ := cs.CoreV1().Pods(ns).Create(ctx, makePod(ns, "not-ours", "default-scheduler", nil, nil), metav1.CreateOptions{})
		waitCondition(ctx, t, testCtx, ok, 60*time.Second, "bound by bin/scheduler", bound)
		waitCondition(ctx, t, testCtx, cron, 30*time.Second, "parked", parkedWith("tolerates taint dedicated=batch:NoSchedule"))
		if got, _ := cs.CoreV1().Pods(ns).Get(ctx, other.Name, metav1.GetOptions{}); bound(got) {
			t.Errorf("the secondary profile scheduled a pod of default-scheduler")
		}
		m := p.metrics(t)
		for _, want := range []string{`ballast_hopeless_parked_pods{reason="taint"} 1`, `ballast_hopeless_verdicts_total{cached="false",result="hopeless"}`, "ballast_hopeless_verdict_duration_seconds_bucket"} {
			if !strings.Contains(m, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
	})

	t.Run("replacement of the default scheduler", func(t *testing.T) {
		testCtx := testutils.WithNewNamespace(t, server, "replacement")
		ns := testCtx.NS.Name
		runScheduler(t, bin, sampleFor(t, "replacement.yaml", kubeconfig, nil))
		pod := makePod(ns, "plain", "", nil, nil)
		pod.Spec.SchedulerName = ""
		pod, _ = cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		waitCondition(ctx, t, testCtx, pod, 60*time.Second, "bound by bin/scheduler as default-scheduler", bound)
	})

	t.Run("malformed plugin args refuse to start, naming the field", func(t *testing.T) {
		for field, value := range map[string]any{"maxTemplateAge": "-5m", "autoscalling": true, "statusWritesPerSecond": 0} {
			t.Run(field, func(t *testing.T) {
				config := sampleFor(t, "secondary-profile.yaml", kubeconfig, func(doc map[string]any) {
					prof := doc["profiles"].([]any)[0].(map[string]any)
					prof["pluginConfig"] = []any{map[string]any{"name": "HopelessPods", "args": map[string]any{field: value}}}
				})
				p := runScheduler(t, bin, config)
				select {
				case err := <-p.done:
					p.done <- err
					if err == nil {
						t.Fatal("scheduler exited 0 with malformed args")
					}
					if !strings.Contains(p.out.String(), field) {
						t.Fatalf("error does not name %q:\n%s", field, tail(p.out.String(), 2000))
					}
				case <-time.After(60 * time.Second):
					t.Fatal("scheduler kept running with malformed args")
				}
			})
		}
	})
}
