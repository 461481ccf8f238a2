package app

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"github.com/ballast-k8s/ballast/internal/version"
)

// execute runs the command line with args, its output discarded.
func execute(args ...string) error {
	_, err := executeOut(args...)
	return err
}

// executeOut runs the command line with args and returns what it printed.
func executeOut(args ...string) (string, error) {
	var out bytes.Buffer
	cmd := NewCommand()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	err := cmd.Execute()
	return out.String(), err
}

func TestRunRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{nil, "a command is required"},
		{[]string{"destroy"}, `unknown command "destroy"`},
		{[]string{"run"}, "exactly one of --cluster-name and --asg-names"},
		{[]string{"plan", "--interval=-1s", "--cluster-name=x"}, "--interval must be positive"},
		{[]string{"run", "--clustername=x"}, "unknown flag: --clustername"},
	} {
		err := execute(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("az-balancer %q: %v, want an error containing %q", tc.args, err, tc.wantErr)
		}
	}
}

// TestHelp: the root and every subcommand have their own help, and each
// subcommand's lists its flags and klog's -v.
func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"Available Commands:", "run ", "plan ", "split ", "--version"}},
		{[]string{"run", "--help"}, []string{"leader lease", "--cluster-name", "--enforce", "-v, --v Level", "--vmodule", "Exit code: 0 on shutdown"}},
		{[]string{"plan", "--help"}, []string{"changes nothing", "--cluster-name", "-v, --v Level"}},
		{[]string{"split", "--help"}, []string{"split <group>", "--dry-run", "-v, --v Level"}},
	} {
		out, err := executeOut(tc.args...)
		if err != nil {
			t.Errorf("az-balancer %q: %v", tc.args, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("az-balancer %q does not print %q:\n%s", tc.args, w, out)
			}
		}
	}
}

// TestVersion: `--version` and `version` print what build/image checks:
// "az-balancer <version> (commit <revision>)".
func TestVersion(t *testing.T) {
	want := "az-balancer " + version.Version() + " (commit " + version.Revision() + ")\n"
	for _, args := range [][]string{{"--version"}, {"version"}} {
		var out, errOut bytes.Buffer
		if code := Main(args, &out, &errOut); code != 0 || out.String() != want {
			t.Errorf("az-balancer %q: exit %d, printed %q (stderr %q), want exit 0 and %q", args, code, out.String(), errOut.String(), want)
		}
	}
}

// TestVerbosity: -v sets klog's verbosity, so that V(2) lines can be seen.
func TestVerbosity(t *testing.T) {
	t.Cleanup(func() { _ = execute("run", "-v=0") })
	if klog.V(4).Enabled() {
		t.Fatal("V(4) is on before -v=4")
	}
	// Validation fails (no --cluster-name), after the flags are parsed.
	_ = execute("run", "-v=4")
	if !klog.V(4).Enabled() {
		t.Error("-v=4 did not turn V(4) on")
	}
	_ = execute("plan", "--v=2")
	if !klog.V(2).Enabled() || klog.V(3).Enabled() {
		t.Error("--v=2 did not set the verbosity to 2")
	}
}

// TestMainExitCode: an error exits 1 and is printed on stderr.
func TestMainExitCode(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main([]string{"run"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "az-balancer: set exactly one of --cluster-name") {
		t.Errorf("az-balancer run: exit %d, stderr %q; want 1 and the error", code, errOut.String())
	}
	if exitCode(ErrLeaseLost) != 1 {
		t.Errorf("a lost lease exits %d, want 1", exitCode(ErrLeaseLost))
	}
}

// TestLeaderElectExitCodes: as kube-scheduler's, the loop ends with an error
// (exit 1) when the lease is lost and with none (exit 0) on shutdown.
func TestLeaderElectExitCodes(t *testing.T) {
	timings := leaseTimings{lease: time.Second, renew: 500 * time.Millisecond, retry: 100 * time.Millisecond}
	for _, tc := range []struct {
		name    string
		lose    bool // the apiserver refuses the renewals
		wantErr error
	}{
		{name: "lost lease", lose: true, wantErr: ErrLeaseLost},
		{name: "shutdown", wantErr: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kube := fake.NewClientset()
			var refuse atomic.Bool
			kube.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
				if refuse.Load() {
					return true, nil, errors.New("the apiserver is unreachable")
				}
				return false, nil, nil
			})
			lock := &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Namespace: "kube-system", Name: "ballast-az-balancer"},
				Client:     kube.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: "pod-1"},
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			started := make(chan struct{})
			loopDone := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- leaderElect(ctx, lock, timings, func(ctx context.Context) {
					close(started)
					<-ctx.Done()
					close(loopDone)
				})
			}()
			select {
			case <-started:
			case <-ctx.Done():
				t.Fatal("never led")
			}
			if tc.lose {
				refuse.Store(true)
			} else {
				cancel()
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("leaderElect did not return")
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("leaderElect: %v, want %v", err, tc.wantErr)
			}
			select {
			case <-loopDone:
			case <-time.After(30 * time.Second):
				t.Error("the loop's context was not cancelled")
			}
			if !tc.lose {
				// ReleaseOnCancel: a shutdown hands the lease over at once.
				l, err := kube.CoordinationV1().Leases("kube-system").Get(context.Background(), "ballast-az-balancer", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
					t.Errorf("lease %+v still held after shutdown", l.Spec)
				}
			}
		})
	}
}
