package deploy_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2/ktesting"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/validation"

	"github.com/ballast-k8s/ballast/config/v1alpha1"
)

const pluginName = "HopelessPods"

// The ConfigMap of scheduler-secondary is generated from a copy of the sample
// (kustomize reads no file outside its directory): the copy must not drift.
func TestSecondaryProfileCopyIsIdentical(t *testing.T) {
	sample, err := os.ReadFile("../config/samples/secondary-profile.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := os.ReadFile("scheduler-secondary/secondary-profile.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sample, cp) {
		t.Errorf("deploy/scheduler-secondary/secondary-profile.yaml differs from config/samples/secondary-profile.yaml; copy the sample over it")
	}
}

// loadSchedulerConfig reads a file the way kube-scheduler's --config does,
// validates it the way kube-scheduler does, and decodes the HopelessPods args
// of every profile the way the plugin does.
func loadSchedulerConfig(t *testing.T, file string) (*config.KubeSchedulerConfiguration, map[string]*v1alpha1.HopelessPodsArgs) {
	t.Helper()
	logger, _ := ktesting.NewTestContext(t)
	cfg, err := options.LoadConfigFromFile(logger, file)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if err := validation.ValidateKubeSchedulerConfiguration(cfg); err != nil {
		t.Fatalf("%s: invalid: %v", file, err)
	}
	args := map[string]*v1alpha1.HopelessPodsArgs{}
	for _, p := range cfg.Profiles {
		var raw runtime.Object
		for _, pc := range p.PluginConfig {
			if pc.Name == pluginName {
				raw = pc.Args
			}
		}
		if raw == nil {
			t.Errorf("%s: profile %s has no pluginConfig for %s", file, p.SchedulerName, pluginName)
			continue
		}
		// The scheduler's scheme does not know Ballast's args: they stay raw
		// until the plugin's factory decodes them.
		if _, ok := raw.(*runtime.Unknown); !ok {
			t.Errorf("%s: args of %s are %T, want *runtime.Unknown", file, pluginName, raw)
		}
		a, err := v1alpha1.DecodeHopelessPodsArgs(raw)
		if err != nil {
			t.Errorf("%s: profile %s: %v", file, p.SchedulerName, err)
			continue
		}
		args[p.SchedulerName] = a
		if p.Plugins == nil || !enabled(p.Plugins.PreFilter, pluginName) || !enabled(p.Plugins.MultiPoint, pluginName) {
			t.Errorf("%s: profile %s does not enable %s at preFilter and multiPoint", file, p.SchedulerName, pluginName)
		}
	}
	return cfg, args
}

func enabled(ps config.PluginSet, name string) bool {
	return slices.ContainsFunc(ps.Enabled, func(p config.Plugin) bool { return p.Name == name })
}

func TestSchedulerConfigSamplesLoad(t *testing.T) {
	samples, err := filepath.Glob("../config/samples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) < 3 {
		t.Fatalf("found samples %v, want at least the three of config/samples", samples)
	}
	want := map[string]struct {
		scheduler, lease string
		autoscaling      bool
	}{
		"secondary-profile.yaml":   {"ballast-scheduler", "ballast-scheduler", false},
		"autoscaling-profile.yaml": {"ballast-scheduler", "ballast-scheduler", true},
		"replacement.yaml":         {"default-scheduler", "kube-scheduler", false},
	}
	for _, file := range samples {
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg, args := loadSchedulerConfig(t, file)
			w, ok := want[filepath.Base(file)]
			if !ok {
				return // a new sample: it loads and validates, nothing more is known of it
			}
			if len(cfg.Profiles) != 1 || cfg.Profiles[0].SchedulerName != w.scheduler {
				t.Errorf("profiles %v, want one named %s", profileNames(cfg), w.scheduler)
			}
			le := cfg.LeaderElection
			if !le.LeaderElect || le.ResourceName != w.lease || le.ResourceNamespace != "kube-system" {
				t.Errorf("leader election %+v, want on, lease kube-system/%s", le, w.lease)
			}
			if a := args[w.scheduler]; a == nil || *a.Autoscaling != w.autoscaling {
				t.Errorf("args %+v, want autoscaling %v", a, w.autoscaling)
			}
		})
	}
}

// The config the secondary Deployment mounts is loaded from the rendered
// ConfigMap itself, and agrees with the RBAC rendered beside it.
func TestSchedulerSecondaryConfig(t *testing.T) {
	objs := render(t, "scheduler-secondary")
	cm := convert[v1.ConfigMap](t, find(t, objs, "ConfigMap", ""))
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(cm.Data["config.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, args := loadSchedulerConfig(t, file)
	if cfg.ClientConnection.Kubeconfig != "" {
		t.Errorf("clientConnection.kubeconfig = %q, want in-cluster (empty)", cfg.ClientConnection.Kubeconfig)
	}
	le := cfg.LeaderElection
	if !le.LeaderElect {
		t.Error("leader election is off; two replicas would both schedule")
	}
	lease := convert[rbacv1.Role](t, find(t, objs, "Role", "ballast-scheduler:leader-election"))
	if le.ResourceNamespace != lease.Namespace || !namedIn(lease.Rules, "leases", "update", le.ResourceName) || !namedIn(lease.Rules, "leases", "get", le.ResourceName) {
		t.Errorf("the config takes lease %s/%s; the Role %s/%s does not grant get and update on it", le.ResourceNamespace, le.ResourceName, lease.Namespace, lease.Name)
	}
	reader := convert[rbacv1.Role](t, find(t, objs, "Role", "ballast-scheduler:node-groups-reader"))
	for name, a := range args {
		ref := a.NodeGroupsConfigMap
		for _, verb := range []string{"get", "list", "watch"} {
			if ref.Namespace != reader.Namespace || !namedIn(reader.Rules, "configmaps", verb, ref.Name) {
				t.Errorf("profile %s reads ConfigMap %s/%s; the Role %s/%s does not grant %s on it", name, ref.Namespace, ref.Name, reader.Namespace, reader.Name, verb)
			}
		}
	}
}

func profileNames(cfg *config.KubeSchedulerConfiguration) []string {
	var out []string
	for _, p := range cfg.Profiles {
		out = append(out, p.SchedulerName)
	}
	return out
}
