package deploy_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	testutils "k8s.io/kubernetes/test/integration/util"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

const fieldManager = "ballast-deploy-test"

// dynamicClient returns a dynamic client of the test apiserver and a REST
// mapper from its discovery, once the apiserver has made kube-system.
func dynamicClient(t *testing.T, server *testutils.TestContext) (dynamic.Interface, meta.RESTMapper) {
	t.Helper()
	ctx, cs := server.Ctx, server.ClientSet
	dyn, err := dynamic.NewForConfig(server.KubeConfig)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "namespace kube-system", func() (bool, error) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
		return err == nil, nil
	})
	groups, err := restmapper.GetAPIGroupResources(cs.Discovery())
	if err != nil {
		t.Fatal(err)
	}
	return dyn, restmapper.NewDiscoveryRESTMapper(groups)
}

// applyRBAC applies, for real, the RBAC objects (and service accounts) among objs.
func applyRBAC(ctx context.Context, t *testing.T, dyn dynamic.Interface, mapper meta.RESTMapper, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			apply(ctx, t, dyn, mapper, o, false)
		}
	}
}

// One kube-apiserver v1.37.2 (RBAC on) for every manifest: each rendered
// object is applied server-side in dry-run, which runs defaulting, validation
// and admission but stores nothing; then the RBAC is applied for real and
// exercised as the service accounts it binds.
func TestAPIServer(t *testing.T) {
	server := testutils.InitTestAPIServer(t, "deploy", nil)
	ctx, cs := server.Ctx, server.ClientSet
	dyn, mapper := dynamicClient(t, server)

	rendered := map[string][]*unstructured.Unstructured{}
	for _, dir := range kustomizations {
		rendered[dir] = render(t, dir)
	}

	t.Run("dry-run apply of every rendered object", func(t *testing.T) {
		for _, dir := range kustomizations {
			for _, o := range rendered[dir] {
				got := apply(ctx, t, dyn, mapper, o, true)
				if got == nil {
					continue
				}
				// Unknown fields fail the apply (server-side apply is strict);
				// a dry-run create still fills in what storage would.
				if got.GetUID() == "" {
					t.Errorf("%s: %s %s: the dry-run returned no uid", dir, o.GetKind(), o.GetName())
				}
			}
		}
		// Nothing was stored.
		if _, err := cs.AppsV1().Deployments("kube-system").Get(ctx, "ballast-scheduler", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("dry-run stored the Deployment: %v", err)
		}
	})

	t.Run("static pod of scheduler-replacement", func(t *testing.T) {
		data, err := os.ReadFile("scheduler-replacement/kube-scheduler.yaml")
		if err != nil {
			t.Fatal(err)
		}
		pod := &v1.Pod{}
		if err := yaml.UnmarshalStrict(data, pod); err != nil {
			t.Fatalf("kube-scheduler.yaml: %v", err)
		}
		checkStaticPod(t, pod)
		created, err := cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatalf("dry-run create of the static pod: %v", err)
		}
		if created.Spec.Containers[0].TerminationMessagePath == "" {
			t.Error("the dry-run returned an undefaulted pod")
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &obj.Object); err != nil {
			t.Fatal(err)
		}
		apply(ctx, t, dyn, mapper, obj, true)
	})

	t.Run("node-group ConfigMap of docs/node-groups.md", func(t *testing.T) {
		cm := nodeGroupsDocConfigMap(t)
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(nodeGroupsDocYAML(t)), &obj.Object); err != nil {
			t.Fatal(err)
		}
		if got := apply(ctx, t, dyn, mapper, obj, true); got != nil && got.GetName() != cm.Name {
			t.Errorf("applied %s, want %s", got.GetName(), cm.Name)
		}
	})

	t.Run("mutating admission policy of scheduler-replacement/README.md", func(t *testing.T) {
		docs := readmePolicy(t)
		for _, d := range docs {
			apply(ctx, t, dyn, mapper, d, false)
		}
		for name, labels := range map[string]map[string]string{"opted-in": {"ballast.k8s.io/scheduler": "enabled"}, "not-opted-in": nil} {
			if _, err := cs.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		schedulerOf := func(ns, schedulerName string) (string, error) {
			pod := &v1.Pod{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "p-", Namespace: ns},
				Spec:       v1.PodSpec{SchedulerName: schedulerName, Containers: []v1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}},
			}
			got, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				return "", err
			}
			return got.Spec.SchedulerName, nil
		}
		// Policies are loaded asynchronously.
		waitFor(ctx, t, "the policy to mutate pods of the opted-in namespace", func() (bool, error) {
			got, err := schedulerOf("opted-in", "")
			return got == "ballast-scheduler", err
		})
		for _, c := range []struct{ ns, set, want string }{
			{"opted-in", "default-scheduler", "ballast-scheduler"},
			{"opted-in", "my-scheduler", "my-scheduler"},
			{"not-opted-in", "", "default-scheduler"},
		} {
			if got, err := schedulerOf(c.ns, c.set); err != nil || got != c.want {
				t.Errorf("pod in %s with schedulerName %q: got %q (%v), want %q", c.ns, c.set, got, err, c.want)
			}
		}
	})

	// Real apply of the RBAC, then real requests as the service accounts.
	for _, dir := range []string{"scheduler-secondary", "az-balancer"} {
		for _, o := range rendered[dir] {
			switch o.GetKind() {
			case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
				apply(ctx, t, dyn, mapper, o, false)
			}
		}
	}
	// Objects that are not the service accounts' own, created as admin.
	for _, cm := range []string{"someone-elses"} {
		if _, err := cs.CoreV1().ConfigMaps("kube-system").Create(ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: cm}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: "local"}, Provisioner: "kubernetes.io/no-provisioner",
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "local-1"},
		Spec: v1.PersistentVolumeSpec{
			StorageClassName: "local", AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			Capacity:               v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")},
			PersistentVolumeSource: v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: "/mnt/disks/1"}},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: v1.NodeSelectorOpIn, Values: []string{"node-1"}}},
			}}}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default"},
		Spec: v1.PersistentVolumeClaimSpec{
			StorageClassName: ptr.To("local"), AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			Resources: v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer testutils.CleanupNodes(cs, t)

	t.Run("scheduler service account", func(t *testing.T) {
		as := impersonate(t, server.KubeConfig, "kube-system", "ballast-scheduler")
		cms := as.CoreV1().ConfigMaps("kube-system")
		leases := as.CoordinationV1().Leases("kube-system")
		byName := metav1.ListOptions{FieldSelector: "metadata.name=ballast-node-groups"}
		// RBAC is eventually consistent with the bindings just written.
		waitFor(ctx, t, "the scheduler's bindings to take effect", func() (bool, error) {
			_, err := cms.List(ctx, byName)
			return err == nil, nil
		})
		allowed(t, "list the node-group ConfigMap by name", func() error { _, err := cms.List(ctx, byName); return err })
		allowed(t, "watch the node-group ConfigMap by name", func() error {
			w, err := cms.Watch(ctx, byName)
			if err == nil {
				w.Stop()
			}
			return err
		})
		allowed(t, "get the delegated-authentication ConfigMap", func() error {
			_, err := cms.Get(ctx, "extension-apiserver-authentication", metav1.GetOptions{})
			return err
		})
		allowed(t, "create its lease", func() error { return createLease(ctx, leases, "ballast-scheduler") })
		allowed(t, "get and update its lease", func() error { return renewLease(ctx, leases, "ballast-scheduler") })
		allowed(t, "list nodes (system:kube-scheduler)", func() error { _, err := as.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); return err })
		allowed(t, "list storage classes (system:volume-scheduler)", func() error {
			_, err := as.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
			return err
		})
		forbidden(t, "list every ConfigMap of kube-system", func() error { _, err := cms.List(ctx, metav1.ListOptions{}); return err })
		forbidden(t, "get another ConfigMap", func() error { _, err := cms.Get(ctx, "someone-elses", metav1.GetOptions{}); return err })
		forbidden(t, "get the controller-manager's lease", func() error {
			_, err := leases.Get(ctx, "kube-controller-manager", metav1.GetOptions{})
			return err
		})
		forbidden(t, "list secrets", func() error { _, err := as.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); return err })
		forbidden(t, "delete nodes", func() error { return as.CoreV1().Nodes().Delete(ctx, "node-1", metav1.DeleteOptions{}) })
	})

	t.Run("the scheduler binary runs on the deployed RBAC alone", func(t *testing.T) {
		// The lease the service-account subtest took for a test holder.
		if err := cs.CoordinationV1().Leases("kube-system").Delete(ctx, "ballast-scheduler", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		objs := rendered["scheduler-secondary"]
		runDeployedScheduler(ctx, t, cs, server.KubeConfig, objs)
		cm := convert[v1.ConfigMap](t, find(t, objs, "ConfigMap", ""))
		var doc struct {
			Profiles []struct{ SchedulerName string }
		}
		if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &doc); err != nil || len(doc.Profiles) != 1 {
			t.Fatalf("profiles of the shipped config: %v %v", doc.Profiles, err)
		}
		schedulesWithDeployedRBAC(ctx, t, cs, doc.Profiles[0].SchedulerName)
	})

	t.Run("az-balancer service account", func(t *testing.T) {
		as := impersonate(t, server.KubeConfig, "kube-system", "cluster-autoscaler")
		cms := as.CoreV1().ConfigMaps("kube-system")
		leases := as.CoordinationV1().Leases("kube-system")
		waitFor(ctx, t, "the balancer's bindings to take effect", func() (bool, error) {
			_, err := as.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			return err == nil, nil
		})
		// What internal/balancer and cmd/az-balancer do, call for call.
		allowed(t, "list nodes", func() error {
			_, err := as.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
			return err
		})
		allowed(t, "list persistent volumes", func() error {
			_, err := as.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
			return err
		})
		allowed(t, "list CSI nodes (the topology keys of CSI drivers)", func() error {
			_, err := as.StorageV1().CSINodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
			return err
		})
		allowed(t, "annotate a node (merge patch)", func() error {
			_, err := as.CoreV1().Nodes().Patch(ctx, "node-1", types.MergePatchType,
				[]byte(`{"metadata":{"annotations":{"cluster-autoscaler.kubernetes.io/scale-down-disabled":"true","ballast.k8s.io/protected-by":"az-balancer"}}}`),
				metav1.PatchOptions{FieldManager: "az-balancer"})
			return err
		})
		allowed(t, "create the node-group ConfigMap", func() error {
			_, err := cms.Create(ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "ballast-node-groups"}}, metav1.CreateOptions{})
			return err
		})
		allowed(t, "get and update the node-group ConfigMap", func() error {
			cm, err := cms.Get(ctx, "ballast-node-groups", metav1.GetOptions{})
			if err != nil {
				return err
			}
			cm.Data = map[string]string{"node-groups.yaml": "x"}
			_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
			return err
		})
		allowed(t, "create its lease", func() error { return createLease(ctx, leases, "ballast-az-balancer") })
		allowed(t, "get and update its lease", func() error { return renewLease(ctx, leases, "ballast-az-balancer") })
		// Events on the ConfigMap (kube-system) and on nodes and PVs (default, as for every cluster-scoped object).
		for ns, obj := range map[string]v1.ObjectReference{
			"kube-system": {Kind: "ConfigMap", Namespace: "kube-system", Name: "ballast-node-groups"},
			"default":     {Kind: "Node", Name: "node-1"},
		} {
			allowed(t, "create an event in "+ns, func() error {
				_, err := as.CoreV1().Events(ns).Create(ctx, &v1.Event{
					ObjectMeta:     metav1.ObjectMeta{GenerateName: "az-balancer-", Namespace: ns},
					InvolvedObject: obj, Reason: "LocalVolumeProtected", Type: v1.EventTypeNormal,
				}, metav1.CreateOptions{})
				return err
			})
		}
		allowed(t, "annotate a persistent volume (merge patch)", func() error {
			_, err := as.CoreV1().PersistentVolumes().Patch(ctx, "local-1", types.MergePatchType,
				[]byte(`{"metadata":{"annotations":{"ballast.k8s.io/instance-id":"i-0123"}}}`), metav1.PatchOptions{FieldManager: "az-balancer"})
			return err
		})
		allowed(t, "get a StorageClass", func() error {
			_, err := as.StorageV1().StorageClasses().Get(ctx, "local", metav1.GetOptions{})
			return err
		})
		allowed(t, "get and delete an orphaned claim with a UID precondition", func() error {
			pvc, err := as.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{})
			if err != nil {
				return err
			}
			return as.CoreV1().PersistentVolumeClaims("default").Delete(ctx, "data", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pvc.UID}})
		})
		forbidden(t, "update another ConfigMap", func() error {
			_, err := cms.Update(ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "someone-elses"}}, metav1.UpdateOptions{})
			return err
		})
		forbidden(t, "create a ConfigMap outside kube-system", func() error {
			_, err := as.CoreV1().ConfigMaps("default").Create(ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "ballast-node-groups"}}, metav1.CreateOptions{})
			return err
		})
		forbidden(t, "get the scheduler's lease", func() error { _, err := leases.Get(ctx, "ballast-scheduler", metav1.GetOptions{}); return err })
		forbidden(t, "delete nodes", func() error { return as.CoreV1().Nodes().Delete(ctx, "node-1", metav1.DeleteOptions{}) })
		forbidden(t, "delete persistent volumes", func() error {
			return as.CoreV1().PersistentVolumes().Delete(ctx, "local-1", metav1.DeleteOptions{})
		})
		forbidden(t, "update a claim", func() error {
			_, err := as.CoreV1().PersistentVolumeClaims("default").Update(ctx, &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data"}}, metav1.UpdateOptions{})
			return err
		})
		forbidden(t, "list secrets", func() error { _, err := as.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); return err })
	})
	t.Run("the balancer runs on the deployed RBAC alone, with every verb it grants", func(t *testing.T) {
		balancerRunsOnDeployedRBAC(ctx, t, cs, server.KubeConfig, rendered["az-balancer"])
	})
}

// apply applies o server-side (dry-run or not) and returns what the apiserver answered.
func apply(ctx context.Context, t *testing.T, dyn dynamic.Interface, mapper meta.RESTMapper, o *unstructured.Unstructured, dryRun bool) *unstructured.Unstructured {
	t.Helper()
	gvk := o.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Errorf("%s %s: %v", gvk, o.GetName(), err)
		return nil
	}
	var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if o.GetNamespace() == "" {
			t.Errorf("%s %s is namespaced but has no namespace", gvk.Kind, o.GetName())
			return nil
		}
		ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
	} else if o.GetNamespace() != "" {
		t.Errorf("%s %s is cluster-scoped but has namespace %s", gvk.Kind, o.GetName(), o.GetNamespace())
	}
	opts := metav1.ApplyOptions{FieldManager: fieldManager, Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	got, err := ri.Apply(ctx, o.GetName(), o, opts)
	if err != nil {
		t.Errorf("apply %s %s/%s (dry-run %v): %v", gvk.Kind, o.GetNamespace(), o.GetName(), dryRun, err)
		return nil
	}
	return got
}

func impersonate(t *testing.T, cfg *rest.Config, ns, sa string) kubernetes.Interface {
	t.Helper()
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":" + sa,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func allowed(t *testing.T, what string, call func() error) {
	t.Helper()
	if err := call(); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

func forbidden(t *testing.T, what string, call func() error) {
	t.Helper()
	if err := call(); !apierrors.IsForbidden(err) {
		t.Errorf("%s: got %v, want Forbidden", what, err)
	}
}

func createLease(ctx context.Context, leases interface {
	Create(context.Context, *coordinationv1.Lease, metav1.CreateOptions) (*coordinationv1.Lease, error)
}, name string) error {
	_, err := leases.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("test"), LeaseDurationSeconds: ptr.To[int32](15)},
	}, metav1.CreateOptions{})
	return err
}

func renewLease(ctx context.Context, leases interface {
	Get(context.Context, string, metav1.GetOptions) (*coordinationv1.Lease, error)
	Update(context.Context, *coordinationv1.Lease, metav1.UpdateOptions) (*coordinationv1.Lease, error)
}, name string) error {
	l, err := leases.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) { return cond() }); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// checkStaticPod: what the kubelet and a kubeadm control plane expect of the
// replacement scheduler's manifest.
func checkStaticPod(t *testing.T, pod *v1.Pod) {
	t.Helper()
	if pod.Name != "kube-scheduler" || pod.Namespace != "kube-system" || !pod.Spec.HostNetwork {
		t.Errorf("static pod %s/%s hostNetwork %v, want kube-system/kube-scheduler on the host network", pod.Namespace, pod.Name, pod.Spec.HostNetwork)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	if !strings.HasPrefix(c.Image, "ghcr.io/ballast-k8s/ballast-scheduler:") {
		t.Errorf("image %q, want a tagged ghcr.io/ballast-k8s/ballast-scheduler", c.Image)
	}
	if len(c.Command) == 0 || c.Command[0] != "/usr/local/bin/kube-scheduler" {
		t.Errorf("command %v, want /usr/local/bin/kube-scheduler first", c.Command)
	}
	// Every file a flag names is mounted read-only from the host.
	mounted := map[string]string{}
	for _, m := range c.VolumeMounts {
		if m.ReadOnly {
			mounted[m.MountPath] = m.Name
		}
	}
	hostPaths := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	var config string
	for _, a := range c.Command[1:] {
		name, value, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(value, "/") {
			continue
		}
		if _, ok := hostPaths[mounted[value]]; !ok {
			t.Errorf("%s: %s is not a read-only host mount", name, value)
		}
		if name == "--config" {
			config = hostPaths[mounted[value]]
		}
	}
	if config != "/etc/kubernetes/ballast/replacement.yaml" {
		t.Errorf("--config comes from host path %q, want /etc/kubernetes/ballast/replacement.yaml (README.md says so)", config)
	}
	for _, p := range []*v1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.IntValue() != 10259 || p.HTTPGet.Scheme != v1.URISchemeHTTPS {
			t.Errorf("probe %+v, want HTTPS on 10259", p)
		}
	}
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("securityContext %+v, want no privilege escalation and a read-only root", sc)
	}
}

// readmePolicy returns the objects of the yaml block of
// scheduler-replacement/README.md that holds the MutatingAdmissionPolicy.
func readmePolicy(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile("scheduler-replacement/README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []*unstructured.Unstructured
	for _, m := range regexp.MustCompile("(?ms)^( *)```yaml\n(.*?)^ *```").FindAllStringSubmatch(string(data), -1) {
		if !strings.Contains(m[2], "kind: MutatingAdmissionPolicy\n") {
			continue
		}
		var lines []string
		for _, l := range strings.Split(m[2], "\n") {
			lines = append(lines, strings.TrimPrefix(l, m[1]))
		}
		for _, doc := range strings.Split(strings.Join(lines, "\n"), "\n---\n") {
			obj := &unstructured.Unstructured{}
			if err := yaml.UnmarshalStrict([]byte(doc), &obj.Object); err != nil {
				t.Fatalf("README.md: %v", err)
			}
			out = append(out, obj)
		}
	}
	if len(out) != 2 {
		t.Fatalf("README.md: found %d objects in the policy example, want the policy and its binding", len(out))
	}
	return out
}
