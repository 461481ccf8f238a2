package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ballast-k8s/ballast/plugins/hopeless"
)

// The plugin writes pod status only on the leader, and learns whether the
// scheduler elects one from this: it must match what kube-scheduler v1.37.2
// itself runs with (options.ApplyTo: the file, then the flags given).
func TestLeaderElectionFromFlagsAndConfig(t *testing.T) {
	dir := t.TempDir()
	file := func(body string) string {
		p := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	head := "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nclientConnection:\n  kubeconfig: /dev/null\n"
	for _, tc := range []struct {
		name string
		args func() []string
		want hopeless.LeaderElection
	}{
		{"defaults", func() []string { return nil }, hopeless.LeaderElection{Enabled: true}},
		{"flag off", func() []string { return []string{"--leader-elect=false"} }, hopeless.LeaderElection{Enabled: false}},
		{"file off", func() []string {
			return []string{"--config=" + file(head+"leaderElection:\n  leaderElect: false\n  resourceName: ballast-scheduler\n")}
		}, hopeless.LeaderElection{Enabled: false}},
		{"file without leaderElection", func() []string {
			return []string{"--config=" + file(head)}
		}, hopeless.LeaderElection{Enabled: true}},
		{"flag overrides file", func() []string {
			return []string{"--config=" + file(head+"leaderElection:\n  leaderElect: false\n  resourceName: ballast-scheduler\n"), "--leader-elect=true"}
		}, hopeless.LeaderElection{Enabled: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newCommand()
			if err := cmd.ParseFlags(tc.args()); err != nil {
				t.Fatal(err)
			}
			got, err := leaderElection(cmd.Flags())
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}

	// A file the scheduler cannot read is the scheduler's error to report.
	cmd := newCommand()
	if err := cmd.ParseFlags([]string{"--config=" + filepath.Join(dir, "missing.yaml")}); err != nil {
		t.Fatal(err)
	}
	if _, err := leaderElection(cmd.Flags()); err == nil {
		t.Error("a missing config file gives no error")
	}
}
