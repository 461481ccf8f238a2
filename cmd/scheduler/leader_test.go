package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/ballast-k8s/ballast/internal/shapes"
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

// The plugin mirrors what each profile configures (which filters it runs,
// NodeResourcesFit's ignored resources) and learns it from this: the file's
// profiles as kube-scheduler v1.37.2 decodes and defaults them, and its
// extenders, whose ignoredByScheduler resources scheduler.New makes every
// profile's NodeResourcesFit ignore (pkg/scheduler/scheduler.go
// buildExtenders).
func TestSchedulerConfigFromFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.yaml")
	body := `apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: /dev/null
extenders:
- urlPrefix: http://extender.example:8888
  filterVerb: filter
  managedResources:
  - name: example.com/foo
    ignoredByScheduler: true
profiles:
- schedulerName: default-scheduler
  plugins:
    multiPoint:
      enabled:
      - name: HopelessPods
- schedulerName: relaxed
  plugins:
    multiPoint:
      enabled:
      - name: HopelessPods
    filter:
      disabled:
      - name: TaintToleration
  pluginConfig:
  - name: NodeResourcesFit
    args:
      ignoredResourceGroups: [grp.example.com]
`
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := newCommand()
	if err := cmd.ParseFlags([]string{"--config=" + p}); err != nil {
		t.Fatal(err)
	}
	sc, err := schedulerConfig(cmd.Flags())
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Loaded || len(sc.Profiles) != 2 {
		t.Fatalf("got loaded %v with %d profiles, want the file's 2", sc.Loaded, len(sc.Profiles))
	}
	want := map[string]struct{ disabled, groups []string }{
		"default-scheduler": {nil, nil},
		"relaxed":           {[]string{"TaintToleration"}, []string{"grp.example.com"}},
	}
	for i := range sc.Profiles {
		prof := &sc.Profiles[i]
		opts := &shapes.Options{}
		if err := opts.ApplyProfile(prof, sc.Extenders); err != nil {
			t.Fatal(err)
		}
		w := want[prof.SchedulerName]
		if got := sets.List(opts.DisabledFilters); !slices.Equal(got, w.disabled) && (len(got) > 0 || len(w.disabled) > 0) {
			t.Errorf("%s: disabled filters %v, want %v", prof.SchedulerName, got, w.disabled)
		}
		if got := sets.List(opts.IgnoredResources); !slices.Equal(got, []string{"example.com/foo"}) {
			t.Errorf("%s: ignored resources %v, want the extender's example.com/foo", prof.SchedulerName, got)
		}
		if got := sets.List(opts.IgnoredResourceGroups); !slices.Equal(got, w.groups) && (len(got) > 0 || len(w.groups) > 0) {
			t.Errorf("%s: ignored groups %v, want %v", prof.SchedulerName, got, w.groups)
		}
	}
}
