package deploy_test

import (
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testutils "k8s.io/kubernetes/test/integration/util"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// The scheduler, on the shipped RBAC alone, reports a pile-up on the
// CronJob: it lists and watches the metadata of Jobs to find a parked pod's
// CronJob (list and watch on jobs.batch, which system:kube-scheduler lacks;
// no get) and writes the event on the CronJob
// (events are in system:kube-scheduler). Without the grant the event lands
// on the Job instead, and this test fails.
func TestSchedulerOwnerRBAC(t *testing.T) {
	server := testutils.InitTestAPIServer(t, "owner-rbac", nil)
	ctx, cs := server.Ctx, server.ClientSet
	dyn, mapper := dynamicClient(t, server)
	objs := render(t, "scheduler-secondary")
	applyRBAC(ctx, t, dyn, mapper, objs)
	cm := convert[v1.ConfigMap](t, find(t, objs, "ConfigMap", ""))
	var doc struct {
		Profiles []struct{ SchedulerName string }
	}
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &doc); err != nil || len(doc.Profiles) != 1 {
		t.Fatalf("profiles of the shipped config: %v %v", doc.Profiles, err)
	}

	// The CronJob, one of its Jobs and the Job's pod, as their controllers
	// would make them; the pod tolerates the wrong taint.
	template := v1.PodSpec{SchedulerName: doc.Profiles[0].SchedulerName, RestartPolicy: v1.RestartPolicyNever,
		NodeSelector: map[string]string{"pool": "batch"},
		Tolerations:  []v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "batchjobs", Effect: v1.TaintEffectNoSchedule}},
		Containers: []v1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10",
			Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m")}}}}}
	cron, err := cs.BatchV1().CronJobs("default").Create(ctx, &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "report"},
		Spec: batchv1.CronJobSpec{Schedule: "*/10 * * * *", JobTemplate: batchv1.JobTemplateSpec{
			Spec: batchv1.JobSpec{Template: v1.PodTemplateSpec{Spec: template}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job, err := cs.BatchV1().Jobs("default").Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "report-29500", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "batch/v1", Kind: "CronJob", Name: cron.Name, UID: cron.UID, Controller: ptr.To(true)}}},
		Spec: batchv1.JobSpec{Template: v1.PodTemplateSpec{Spec: template}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	as := impersonate(t, server.KubeConfig, "kube-system", "ballast-scheduler")
	waitFor(ctx, t, "the scheduler's bindings to take effect", func() (bool, error) {
		_, err := as.BatchV1().Jobs(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		return err == nil, nil
	})
	w, err := as.BatchV1().Jobs(metav1.NamespaceAll).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("watch Jobs as the scheduler: %v", err)
	}
	w.Stop()
	forbidden(t, "get a Job (the informer lists; only list and watch are granted)", func() error {
		_, err := as.BatchV1().Jobs("default").Get(ctx, job.Name, metav1.GetOptions{})
		return err
	})
	forbidden(t, "delete a Job", func() error { return as.BatchV1().Jobs("default").Delete(ctx, job.Name, metav1.DeleteOptions{}) })
	forbidden(t, "get a CronJob (not needed: the Job's reference names it)", func() error {
		_, err := as.BatchV1().CronJobs("default").Get(ctx, cron.Name, metav1.GetOptions{})
		return err
	})

	runDeployedScheduler(ctx, t, cs, server.KubeConfig, objs)
	if _, err := cs.CoreV1().Nodes().Create(ctx, &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "batch-1", Labels: map[string]string{"kubernetes.io/hostname": "batch-1", "pool": "batch"}},
		Spec:       v1.NodeSpec{Taints: []v1.Taint{{Key: "dedicated", Value: "batch", Effect: v1.TaintEffectNoSchedule}}},
		Status: v1.NodeStatus{
			Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("16Gi"), v1.ResourcePods: resource.MustParse("110")},
			Capacity:    v1.ResourceList{v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("16Gi"), v1.ResourcePods: resource.MustParse("110")},
			Conditions:  []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: job.Name + "-x7k2p", OwnerReferences: []metav1.OwnerReference{{
		APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID, Controller: ptr.To(true)}}}, Spec: template}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got []v1.Event
	waitFor(ctx, t, "the pile-up event on the CronJob", func() (bool, error) {
		evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "reason=HopelessPods"})
		if err != nil {
			return false, nil
		}
		got = evs.Items
		return len(got) > 0, nil
	})
	if e := got[0]; len(got) != 1 || e.InvolvedObject.Kind != "CronJob" || e.InvolvedObject.UID != cron.UID ||
		!strings.HasPrefix(e.Message, "1 pod of this CronJob is parked: no node or node group tolerates taint dedicated=batch:NoSchedule") {
		t.Errorf("events %+v; want one on the CronJob", got)
	}
}
