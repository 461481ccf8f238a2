package deploy_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"

	"github.com/ballast-k8s/ballast/cmd/az-balancer/app/options"
)

// caTemplateTaintFlags are cluster-autoscaler 1.36.1's flags that take taints
// out of its templates (config/flags: --startup-taint, --ignore-taint (the
// same, deprecated), --status-taint, --startup-taint-prefix; each repeated,
// one value per use).
var caTemplateTaintFlags = []string{"startup-taint", "ignore-taint", "status-taint", "startup-taint-prefix"}

// caFlagValues reads the values of caTemplateTaintFlags from a container's
// command and args, in --flag=value and --flag value forms.
func caFlagValues(c *v1.Container) map[string][]string {
	out := map[string][]string{}
	argv := append(slices.Clone(c.Command), c.Args...)
	for i := 0; i < len(argv); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(argv[i], "-"), "=")
		if !strings.HasPrefix(argv[i], "-") || !slices.Contains(caTemplateTaintFlags, name) {
			continue
		}
		if !hasValue && i+1 < len(argv) {
			i++
			value = argv[i]
		}
		out[name] = append(out[name], value)
	}
	return out
}

// TestTaintFlagsAgreeWithClusterAutoscaler: az-balancer's templates must
// leave out the taints cluster-autoscaler's leave out, or a pod that does
// not tolerate a startup taint is parked while CA scales up for it. The
// shipped sidecar gives az-balancer the same --startup-taint, --ignore-taint,
// --status-taint and --startup-taint-prefix values as the cluster-autoscaler
// container, read through az-balancer's real flags (arguments and
// AZ_BALANCER_* environment).
func TestTaintFlagsAgreeWithClusterAutoscaler(t *testing.T) {
	objs := render(t, "az-balancer")
	d := convert[appsv1.Deployment](t, find(t, objs, "Deployment", "cluster-autoscaler"))
	ca := caFlagValues(container(t, &d.Spec.Template.Spec, "cluster-autoscaler"))
	if len(ca) == 0 {
		t.Fatalf("the cluster-autoscaler container has none of %v: the shipped example is meant to show one", caTemplateTaintFlags)
	}

	bal := container(t, &d.Spec.Template.Spec, "az-balancer")
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	o := &options.Options{}
	o.AddFlags(fs)
	if err := fs.Parse(bal.Args[1:]); err != nil { // Args[0] is the run subcommand
		t.Fatalf("az-balancer args: %v", err)
	}
	cm := convert[v1.ConfigMap](t, find(t, objs, "ConfigMap", ""))
	for k, v := range cm.Data {
		t.Setenv(k, v)
	}
	if err := options.ApplyEnv(fs); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("az-balancer options: %v", err)
	}
	got := o.TemplateOptions()
	sorted := func(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
	for _, c := range []struct {
		name          string
		caValues, bal []string
	}{
		{"startup taints (--startup-taint and --ignore-taint)", append(ca["startup-taint"], ca["ignore-taint"]...), got.StartupTaints},
		{"status taints", ca["status-taint"], got.StatusTaints},
		{"startup taint prefixes", ca["startup-taint-prefix"], got.StartupTaintPrefixes},
	} {
		if diff := cmp.Diff(sorted(c.caValues), sorted(c.bal)); diff != "" {
			t.Errorf("%s: cluster-autoscaler's (-) and az-balancer's (+) differ:\n%s", c.name, diff)
		}
	}
}
