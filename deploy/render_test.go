package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/ballast-k8s/ballast/cmd/az-balancer/app"
)

// kustomizations are the directories `kubectl apply -k` takes. sidecar is a
// Component and is rendered through az-balancer.
var kustomizations = []string{"scheduler-secondary", "az-balancer", "az-balancer/cluster-autoscaler"}

// render runs kustomize on a directory of deploy/ and returns its objects.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range m.Resources() {
		obj, err := r.Map()
		if err != nil {
			t.Fatalf("%s: %s: %v", dir, r.CurId(), err)
		}
		objs = append(objs, &unstructured.Unstructured{Object: obj})
	}
	if len(objs) == 0 {
		t.Fatalf("kustomize build %s rendered nothing", dir)
	}
	return objs
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			return o
		}
	}
	t.Fatalf("no %s %q among the rendered objects", kind, name)
	return nil
}

func all(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func convert[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, out, true); err != nil {
		t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
	}
	return out
}

func container(t *testing.T, spec *v1.PodSpec, name string) *v1.Container {
	t.Helper()
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// kinds lists "Kind/name" of the objects, sorted, hash suffixes of generated
// ConfigMaps cut.
func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		name := o.GetName()
		if o.GetKind() == "ConfigMap" {
			name = name[:strings.LastIndex(name, "-")]
		}
		out = append(out, o.GetKind()+"/"+name)
	}
	slices.Sort(out)
	return out
}

func TestRenderEveryKustomization(t *testing.T) {
	// Every kustomization.yaml under deploy/ is either listed above or a Component.
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.Name() != "kustomization.yaml" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var head struct{ Kind string }
		if err := yaml.Unmarshal(data, &head); err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(path))
		if head.Kind != "Component" && !slices.Contains(kustomizations, dir) {
			t.Errorf("%s is not in the list of kustomizations the tests render", dir)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range kustomizations {
		for _, o := range render(t, dir) {
			if o.GetAPIVersion() == "" || o.GetKind() == "" || o.GetName() == "" {
				t.Errorf("%s: object without apiVersion, kind or name: %v", dir, o.Object)
			}
			if ns := o.GetNamespace(); ns != "" && ns != "kube-system" {
				t.Errorf("%s: %s %s in namespace %q, want kube-system", dir, o.GetKind(), o.GetName(), ns)
			}
		}
	}
}

func TestSchedulerSecondary(t *testing.T) {
	objs := render(t, "scheduler-secondary")
	want := []string{
		"ClusterRole/ballast-scheduler:owner-reader",
		"ClusterRoleBinding/ballast-scheduler:kube-scheduler",
		"ClusterRoleBinding/ballast-scheduler:owner-reader",
		"ClusterRoleBinding/ballast-scheduler:volume-scheduler",
		"ConfigMap/ballast-scheduler-config",
		"Deployment/ballast-scheduler",
		"Role/ballast-scheduler:leader-election",
		"Role/ballast-scheduler:node-groups-reader",
		"RoleBinding/ballast-scheduler:extension-apiserver-authentication-reader",
		"RoleBinding/ballast-scheduler:leader-election",
		"RoleBinding/ballast-scheduler:node-groups-reader",
		"Service/ballast-scheduler-metrics",
		"ServiceAccount/ballast-scheduler",
	}
	if diff := cmp.Diff(want, kinds(objs)); diff != "" {
		t.Errorf("objects (-want, +got):\n%s", diff)
	}

	cm := convert[v1.ConfigMap](t, find(t, objs, "ConfigMap", ""))
	d := convert[appsv1.Deployment](t, find(t, objs, "Deployment", "ballast-scheduler"))
	spec := &d.Spec.Template.Spec
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
	}
	c := container(t, spec, "kube-scheduler")
	if diff := cmp.Diff([]string{"/usr/local/bin/kube-scheduler", "--config=/etc/ballast/config.yaml"}, c.Command); diff != "" {
		t.Errorf("command (-want, +got):\n%s", diff)
	}
	if c.Image != "ghcr.io/ballast-k8s/ballast-scheduler:v0.1.0" {
		t.Errorf("image = %q: the kustomize images entry did not apply", c.Image)
	}
	// --config names a file that the mounted, generated ConfigMap holds.
	mountedFile(t, spec, c, "/etc/ballast/config.yaml", cm)
	if _, ok := cm.Data["config.yaml"]; !ok {
		t.Errorf("ConfigMap %s has keys %v, want config.yaml", cm.Name, keys(cm.Data))
	}
	for _, p := range []struct {
		name  string
		probe *v1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/livez"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe missing", p.name)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || g.Port != intstr.FromInt32(10259) || g.Scheme != v1.URISchemeHTTPS {
			t.Errorf("%s probe = %s %v %s, want %s 10259 HTTPS", p.name, g.Path, g.Port.String(), g.Scheme, p.path)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("requests = %v, want cpu and memory", c.Resources.Requests)
	}
	checkHardened(t, spec, c)

	// The RBAC subjects are the Deployment's service account.
	sa := find(t, objs, "ServiceAccount", "").GetName()
	if spec.ServiceAccountName != sa {
		t.Errorf("serviceAccountName = %q, want %q", spec.ServiceAccountName, sa)
	}
	checkSubjects(t, objs, "kube-system", sa)

	// The metrics Service reaches the pods on 10259.
	svc := convert[v1.Service](t, find(t, objs, "Service", ""))
	if !selects(svc.Spec.Selector, d.Spec.Template.Labels) {
		t.Errorf("Service selector %v does not select the pod labels %v", svc.Spec.Selector, d.Spec.Template.Labels)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 10259 || containerPort(c, svc.Spec.Ports[0].TargetPort) != 10259 || svc.Spec.Ports[0].Name != "https-metrics" {
		t.Errorf("Service ports %+v, want 10259 to the container's 10259", svc.Spec.Ports)
	}
}

func TestAzBalancerSidecar(t *testing.T) {
	objs := render(t, "az-balancer")
	want := []string{
		"ClusterRole/ballast-az-balancer",
		"ClusterRoleBinding/ballast-az-balancer",
		"ConfigMap/ballast-az-balancer-env",
		"Deployment/cluster-autoscaler",
		"Role/ballast-az-balancer",
		"RoleBinding/ballast-az-balancer",
		"ServiceAccount/cluster-autoscaler",
	}
	if diff := cmp.Diff(want, kinds(objs)); diff != "" {
		t.Errorf("objects (-want, +got):\n%s", diff)
	}
	d := convert[appsv1.Deployment](t, find(t, objs, "Deployment", "cluster-autoscaler"))
	spec := &d.Spec.Template.Spec
	var names []string
	for _, c := range spec.Containers {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	if diff := cmp.Diff([]string{"az-balancer", "cluster-autoscaler"}, names); diff != "" {
		t.Fatalf("containers (-want, +got): the patch must add the sidecar and keep cluster-autoscaler:\n%s", diff)
	}
	// The patch puts the sidecar first; kubectl logs/exec must still default to cluster-autoscaler.
	if got := d.Spec.Template.Annotations["kubectl.kubernetes.io/default-container"]; got != "cluster-autoscaler" {
		t.Errorf("default-container annotation = %q, want cluster-autoscaler", got)
	}
	c := container(t, spec, "az-balancer")
	if c.Image != "ghcr.io/ballast-k8s/ballast-az-balancer:v0.1.0" {
		t.Errorf("image = %q: the kustomize images entry did not apply", c.Image)
	}
	checkHardened(t, spec, c)

	// Flags and AZ_BALANCER_* variables exist in cmd/az-balancer.
	flags := balancerFlags(t)
	if len(c.Args) == 0 || c.Args[0] != "run" {
		t.Fatalf("args = %v, want the run subcommand first", c.Args)
	}
	args := map[string]string{}
	for _, a := range c.Args[1:] {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !flags[name] {
			t.Errorf("arg %q is not a flag of az-balancer run", a)
		}
		args[name] = value
	}
	cm := convert[v1.ConfigMap](t, find(t, objs, "ConfigMap", ""))
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != cm.Name {
		t.Errorf("envFrom = %+v, want the generated ConfigMap %s", c.EnvFrom, cm.Name)
	}
	for k := range cm.Data {
		flag := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "AZ_BALANCER_")), "_", "-")
		if !strings.HasPrefix(k, "AZ_BALANCER_") || !flags[flag] {
			t.Errorf("ConfigMap key %s is no az-balancer flag's environment variable", k)
		}
	}
	if cm.Data["AZ_BALANCER_CLUSTER_NAME"] == "" {
		t.Errorf("AZ_BALANCER_CLUSTER_NAME is not set: az-balancer refuses to start without --cluster-name or --asg-names")
	}
	for _, p := range []struct {
		name  string
		probe *v1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s probe = %+v, want GET %s", p.name, p.probe, p.path)
			continue
		}
		if got := fmt.Sprintf(":%d", containerPort(c, p.probe.HTTPGet.Port)); got != args["health-probe-bind-address"] {
			t.Errorf("%s probe port %s, want --health-probe-bind-address %s", p.name, got, args["health-probe-bind-address"])
		}
		// kubelet's default timeout is 1s: a loaded node must not fail the probe.
		if p.probe.TimeoutSeconds < 3 {
			t.Errorf("%s probe timeoutSeconds = %d, want at least 3", p.name, p.probe.TimeoutSeconds)
		}
	}
	// Liveness restarts a container only after several probes, never on one slow answer.
	if lp := c.LivenessProbe; lp != nil && (lp.FailureThreshold < 3 || lp.PeriodSeconds < 10) {
		t.Errorf("liveness probe: failureThreshold %d every %ds, want at least 3 failures at least 10s apart", lp.FailureThreshold, lp.PeriodSeconds)
	}
	// The pod shares one network namespace: the sidecar's ports must not be
	// cluster-autoscaler's (8085 by default, --address).
	taken := map[int32]bool{8085: true}
	for _, other := range spec.Containers {
		if other.Name != c.Name {
			for _, p := range other.Ports {
				taken[p.ContainerPort] = true
			}
		}
	}
	for _, p := range c.Ports {
		if taken[p.ContainerPort] {
			t.Errorf("sidecar port %d is taken by cluster-autoscaler", p.ContainerPort)
		}
	}

	// RBAC: bound to the pod's service account; the names it may write are the
	// ones the flags give.
	checkSubjects(t, objs, "kube-system", spec.ServiceAccountName)
	role := convert[rbacv1.Role](t, find(t, objs, "Role", "ballast-az-balancer"))
	if !namedIn(role.Rules, "configmaps", "update", args["configmap-name"]) {
		t.Errorf("the Role does not let it update ConfigMap %q (--configmap-name)", args["configmap-name"])
	}
	if !namedIn(role.Rules, "leases", "update", args["leader-election-name"]) {
		t.Errorf("the Role does not let it update Lease %q (--leader-election-name)", args["leader-election-name"])
	}
	if role.Namespace != args["configmap-namespace"] || role.Namespace != args["leader-election-namespace"] {
		t.Errorf("Role in %s, flags use %s and %s", role.Namespace, args["configmap-namespace"], args["leader-election-namespace"])
	}
}

// balancerFlags returns the flag names of az-balancer run: its options and
// klog's, which every subcommand inherits.
func balancerFlags(t *testing.T) map[string]bool {
	t.Helper()
	run, _, err := app.NewCommand().Find([]string{"run"})
	if err != nil || run.Name() != "run" {
		t.Fatalf("az-balancer has no run command: %v", err)
	}
	out := map[string]bool{}
	run.Flags().VisitAll(func(f *pflag.Flag) { out[f.Name] = true }) // cmd/az-balancer/app/options
	run.InheritedFlags().VisitAll(func(f *pflag.Flag) { out[f.Name] = true })
	for _, f := range []string{"cluster-name", "leader-elect", "configmap-name", "v"} {
		if !out[f] {
			t.Fatalf("found flags %v in az-balancer run, not %s", keys(out), f)
		}
	}
	return out
}

// checkHardened: not root, no privilege escalation, read-only root, no capabilities.
func checkHardened(t *testing.T, spec *v1.PodSpec, c *v1.Container) {
	t.Helper()
	nonRoot := c.SecurityContext != nil && c.SecurityContext.RunAsNonRoot != nil && *c.SecurityContext.RunAsNonRoot ||
		spec.SecurityContext != nil && spec.SecurityContext.RunAsNonRoot != nil && *spec.SecurityContext.RunAsNonRoot
	if !nonRoot {
		t.Errorf("container %s: runAsNonRoot is not set", c.Name)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []v1.Capability{"ALL"}) {
		t.Errorf("container %s: securityContext %+v, want read-only root, no privilege escalation, drop ALL", c.Name, sc)
	}
}

// checkSubjects: every binding binds exactly the service account.
func checkSubjects(t *testing.T, objs []*unstructured.Unstructured, ns, sa string) {
	t.Helper()
	want := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}}
	n := 0
	for _, o := range append(all(objs, "ClusterRoleBinding"), all(objs, "RoleBinding")...) {
		n++
		b := convert[rbacv1.RoleBinding](t, o)
		if diff := cmp.Diff(want, b.Subjects); diff != "" {
			t.Errorf("%s %s subjects (-want, +got):\n%s", o.GetKind(), o.GetName(), diff)
		}
	}
	if n == 0 {
		t.Error("no bindings")
	}
}

// mountedFile checks that path is key of cm, mounted read-only in c.
func mountedFile(t *testing.T, spec *v1.PodSpec, c *v1.Container, path string, cm *v1.ConfigMap) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		key, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil && v.ConfigMap.Name == cm.Name && m.ReadOnly {
				if _, ok := cm.Data[key]; ok {
					return
				}
			}
		}
	}
	t.Errorf("%s is not a key of ConfigMap %s mounted read-only in %s", path, cm.Name, c.Name)
}

func namedIn(rules []rbacv1.PolicyRule, resource, verb, name string) bool {
	for _, r := range rules {
		if slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) && (len(r.ResourceNames) == 0 || slices.Contains(r.ResourceNames, name)) {
			return true
		}
	}
	return false
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func containerPort(c *v1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
