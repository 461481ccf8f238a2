package deploy_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	autoscalingtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/balancer"
)

// verbRecorder records the verb of every request that goes through it, by
// resource ("storage.k8s.io/storageclasses get"), and the ones refused.
type verbRecorder struct {
	rt     http.RoundTripper
	mu     sync.Mutex
	used   map[string]bool
	denied []string
}

func (r *verbRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.rt.RoundTrip(req)
	key := requestVerb(req)
	r.mu.Lock()
	defer r.mu.Unlock()
	if key != "" {
		r.used[key] = true
		if resp != nil && resp.StatusCode == http.StatusForbidden {
			r.denied = append(r.denied, req.Method+" "+req.URL.Path)
		}
	}
	return resp, err
}

func (r *verbRecorder) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.used[key]
}

func (r *verbRecorder) snapshot() (map[string]bool, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]bool, len(r.used))
	for k := range r.used {
		out[k] = true
	}
	return out, append([]string(nil), r.denied...)
}

// requestVerb maps a request to "group/resource verb" as RBAC sees it.
func requestVerb(req *http.Request) string {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	var group string
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		group, parts = parts[1], parts[3:]
	default:
		return "" // discovery, version
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	if len(parts) == 0 {
		return ""
	}
	resource, named := parts[0], len(parts) > 1
	var verb string
	switch req.Method {
	case http.MethodGet:
		switch {
		case named:
			verb = "get"
		case req.URL.Query().Get("watch") == "true":
			verb = "watch"
		default:
			verb = "list"
		}
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
		if !named {
			verb = "deletecollection"
		}
	}
	return group + "/" + resource + " " + verb
}

// grantedVerbs lists the rules of the rendered ClusterRole and Role of the balancer.
func grantedVerbs(t *testing.T, objs []*unstructured.Unstructured) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	var rules []rbacv1.PolicyRule
	rules = append(rules, convert[rbacv1.ClusterRole](t, find(t, objs, "ClusterRole", "ballast-az-balancer")).Rules...)
	rules = append(rules, convert[rbacv1.Role](t, find(t, objs, "Role", "ballast-az-balancer")).Rules...)
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out[g+"/"+res+" "+v] = true
				}
			}
		}
	}
	return out
}

// balancerRunsOnDeployedRBAC runs the real balancer, leader election
// included, as the service account the deployed RBAC binds, through a loop
// that takes every path that talks to the apiserver: protecting a node,
// recording a volume's instance, releasing an orphaned claim, publishing the
// ConfigMap, emitting (and repeating) events. No request may be refused, and
// the verbs it sends must be exactly the verbs the ClusterRole and Role grant:
// a missing one fails in production, an extra one is a permission nobody uses.
func balancerRunsOnDeployedRBAC(ctx context.Context, t *testing.T, cs kubernetes.Interface, cfg *rest.Config, objs []*unstructured.Unstructured) {
	// Earlier subtests left the lease and the ConfigMap: the balancer creates its own.
	_ = cs.CoordinationV1().Leases("kube-system").Delete(ctx, "ballast-az-balancer", metav1.DeleteOptions{})
	_ = cs.CoreV1().ConfigMaps("kube-system").Delete(ctx, "ballast-node-groups", metav1.DeleteOptions{})

	emu := awstest.NewServer(clock.RealClock{})
	t.Cleanup(emu.Close)
	zones := []string{"us-east-1a", "us-east-1b"}
	ids := emu.CreateGroup(awstest.GroupSpec{Name: "db", Zones: zones, MaxSize: 5, InstanceType: "i3.xlarge",
		Tags:      map[string]string{asg.TagAutoDiscoveryEnabled: "true", asg.TagClusterPrefix + "prod": "owned"},
		Instances: map[string]int{zones[0]: 2}})[zones[0]]
	asc := autoscaling.New(autoscaling.Options{Region: "us-east-1", BaseEndpoint: awssdk.String(emu.URL), Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")})
	// The orphan's instance is gone.
	if _, err := asc.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: awssdk.String(ids[1]), ShouldDecrementDesiredCapacity: awssdk.Bool(true)}); err != nil {
		t.Fatal(err)
	}

	// As admin: a node with a bound local volume, and an orphaned bound volume
	// whose StorageClass opts in and whose delay has passed.
	if _, err := cs.CoreV1().Nodes().Create(ctx, &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "bal-node", Labels: map[string]string{v1.LabelHostname: "bal-node"}},
		Spec:       v1.NodeSpec{ProviderID: "aws:///" + zones[0] + "/" + ids[0]},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta:  metav1.ObjectMeta{Name: "bal-local", Annotations: map[string]string{balancer.AnnotationReleaseOrphansAfter: "30m"}},
		Provisioner: "kubernetes.io/no-provisioner",
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	claim, err := cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "bal-orphan", Namespace: "default"},
		Spec: v1.PersistentVolumeClaimSpec{
			StorageClassName: ptr.To("bal-local"), AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			Resources: v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	boundPV := func(name, host string, ref *v1.ObjectReference, annotations map[string]string) {
		t.Helper()
		pv, err := cs.CoreV1().PersistentVolumes().Create(ctx, &v1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
			Spec: v1.PersistentVolumeSpec{
				StorageClassName: "bal-local", AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce}, ClaimRef: ref,
				Capacity:               v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")},
				PersistentVolumeSource: v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: "/mnt/disks/" + name}},
				NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
					MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{host}}},
				}}}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pv.Status.Phase = v1.VolumeBound
		if _, err := cs.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	boundPV("bal-held", "bal-node", &v1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: "default", Name: "bal-held", UID: "uid-held"}, nil)
	boundPV("bal-orphan", "bal-gone", &v1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: "default", Name: claim.Name, UID: claim.UID},
		map[string]string{
			balancer.AnnotationInstanceID: ids[1], balancer.AnnotationZone: zones[0],
			balancer.AnnotationOrphanedSince: time.Now().Add(-2 * time.Hour).UTC().Format(time.RFC3339),
		})

	// As the service account, through the recorder.
	rec := &verbRecorder{used: map[string]bool{}}
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:kube-system:cluster-autoscaler",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
	}
	c.Wrap(func(rt http.RoundTripper) http.RoundTripper { rec.rt = rt; return rec })
	kube, err := kubernetes.NewForConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	cloud, err := asg.New(ctx, emu.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "az-balancer"})
	b := balancer.New(kube, cloud, recorder, clock.RealClock{}, balancer.Options{
		Selector: asg.AutoDiscovery("prod"), ConfigMapNamespace: "kube-system", ConfigMapName: "ballast-node-groups",
		TemplateRefresh: time.Nanosecond,
	}, nil)

	// Leader election as cmd/az-balancer does it; two loops while leading,
	// AZRebalance resumed between them so that the same event repeats (a patch).
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var loopErrs []error
	leaderelection.RunOrDie(lctx, leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: "kube-system", Name: "ballast-az-balancer"},
			Client:     kube.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: "rbac-test", EventRecorder: recorder},
		},
		ReleaseOnCancel: true, Name: "az-balancer",
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				defer cancel()
				loopErrs = append(loopErrs, b.Reconcile(ctx))
				if _, err := asc.ResumeProcesses(ctx, &autoscaling.ResumeProcessesInput{AutoScalingGroupName: awssdk.String("db"),
					ScalingProcesses: []string{asg.ProcessAZRebalance}}); err != nil {
					loopErrs = append(loopErrs, err)
				}
				// A new node-template label changes the published templates: the
				// second loop updates the ConfigMap.
				if _, err := asc.CreateOrUpdateTags(ctx, &autoscaling.CreateOrUpdateTagsInput{Tags: []autoscalingtypes.Tag{{
					ResourceId: awssdk.String("db"), ResourceType: awssdk.String("auto-scaling-group"),
					Key:   awssdk.String("k8s.io/cluster-autoscaler/node-template/label/rbac-test"),
					Value: awssdk.String("changed"), PropagateAtLaunch: awssdk.Bool(false)}}}); err != nil {
					loopErrs = append(loopErrs, err)
				}
				loopErrs = append(loopErrs, b.Reconcile(ctx))
			},
			OnStoppedLeading: func() {},
		},
	})
	for i, err := range loopErrs {
		if err != nil {
			t.Errorf("loop step %d under the deployed RBAC: %v", i, err)
		}
	}
	// Events are written in the background.
	waitFor(ctx, t, "the balancer's events, created and then patched", func() (bool, error) {
		return rec.has("/events create") && rec.has("/events patch"), nil
	})
	if _, err := cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, claim.Name, metav1.GetOptions{}); err == nil {
		t.Errorf("the orphaned claim was not released: the loop did not take the release path")
	}

	used, denied := rec.snapshot()
	if len(denied) > 0 {
		t.Errorf("requests the deployed RBAC refused (missing verbs):\n%s", strings.Join(denied, "\n"))
	}
	if diff := cmp.Diff(sortedKeys(grantedVerbs(t, objs)), sortedKeys(used)); diff != "" {
		t.Errorf("verbs the RBAC grants (-) vs verbs the balancer used (+):\n%s", diff)
	}
}
