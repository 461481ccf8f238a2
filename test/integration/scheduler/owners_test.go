package scheduler

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/component-base/metrics/legacyregistry"
	testutils "k8s.io/kubernetes/test/integration/util"
	"k8s.io/utils/ptr"

	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// Incident 8 as the operator sees it: a CronJob whose Jobs' pods are
// hopeless. The pile-up is reported once, on the CronJob (found through
// each pod's Job), and counts the pods; the pods keep their condition and
// get no event each.
func TestPileUpReportedOnCronJob(t *testing.T) {
	server := testutils.InitTestAPIServer(t, "owners", nil)
	testCtx := testutils.WithNewNamespace(t, server, "pileup")
	ctx, cs, ns := testCtx.Ctx, testCtx.ClientSet, testCtx.NS.Name
	defer testutils.CleanupNodes(cs, t)
	if _, err := cs.CoreV1().Nodes().Create(ctx, testenv.Node("batch-1", map[string]string{"pool": "batch"}, []v1.Taint{batchTaint}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	startScheduler(t, testCtx, "secondary-profile.yaml", nil)

	template := makePod(ns, "", "ballast-scheduler", map[string]string{"pool": "batch"}, wrongToleration).Spec
	template.RestartPolicy = v1.RestartPolicyNever
	cron, err := cs.BatchV1().CronJobs(ns).Create(ctx, &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "report"},
		Spec: batchv1.CronJobSpec{Schedule: "*/10 * * * *", JobTemplate: batchv1.JobTemplateSpec{
			Spec: batchv1.JobSpec{Template: v1.PodTemplateSpec{Spec: template}},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// No controller-manager runs here: make what the CronJob and Job
	// controllers would, with their controller references.
	const jobs = 3
	var pods []*v1.Pod
	for i := 0; i < jobs; i++ {
		job, err := cs.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("report-2950%d", i), OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "batch/v1", Kind: "CronJob", Name: cron.Name, UID: cron.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}}},
			Spec: batchv1.JobSpec{Template: v1.PodTemplateSpec{Spec: template}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p := makePod(ns, job.Name+"-x7k2p", "ballast-scheduler", map[string]string{"pool": "batch"}, wrongToleration)
		p.Spec.RestartPolicy = v1.RestartPolicyNever
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
		p, err = cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}
	const why = "no node or node group tolerates taint dedicated=batch:NoSchedule (pod tolerates dedicated=batchjobs:NoSchedule"
	for _, p := range pods {
		waitCondition(ctx, t, testCtx, p, 20*time.Second, "parked", parkedWith(why))
	}

	// What docs/operations.md tells the operator to run:
	//   kubectl get events -A --field-selector reason=HopelessPods,involvedObject.kind=CronJob
	selector := "reason=HopelessPods,involvedObject.kind=CronJob,involvedObject.name=report"
	want := fmt.Sprintf("%d pods of this CronJob are parked: %s", jobs, why)
	var got []v1.Event
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: selector})
		if err != nil {
			return false, nil
		}
		got = evs.Items
		return len(got) == 1 && strings.HasPrefix(got[0].Message, want), nil
	}); err != nil {
		t.Fatalf("events %s: %+v; want one saying %q", selector, got, want)
	}
	if e := got[0]; e.InvolvedObject.UID != cron.UID || e.Type != v1.EventTypeWarning || e.Count != jobs {
		t.Errorf("event on %s (uid %s), type %s, count %d; want the CronJob's uid %s, Warning, %d", e.InvolvedObject.Name, e.InvolvedObject.UID, e.Type, e.Count, cron.UID, jobs)
	}
	// The same object through events.k8s.io/v1, as kubectl events reads it.
	evs, err := cs.EventsV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=HopelessPods"})
	if err != nil || len(evs.Items) != 1 || evs.Items[0].Regarding.Kind != "CronJob" || !strings.HasPrefix(evs.Items[0].Note, want) {
		t.Errorf("events.k8s.io/v1: %+v %v", evs, err)
	}
	// Nothing on the Jobs, and no event per pod.
	for _, kind := range []string{"Job", "Pod"} {
		evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=" + kind})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs.Items {
			if e.Reason == "Hopeless" || e.Reason == "HopelessPods" {
				t.Errorf("event on %s %s: %s %q", kind, e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
	}
	if n := testenv.Gathered(t, legacyregistry.DefaultGatherer, "ballast_hopeless_owner_parked_pods", "owner_kind", "CronJob"); n != jobs {
		t.Errorf("ballast_hopeless_owner_parked_pods{owner_kind=CronJob} = %v, want %d", n, jobs)
	}
	if n := testenv.Gathered(t, legacyregistry.DefaultGatherer, "ballast_hopeless_owner_max_parked_pods", "owner_kind", "CronJob"); n != jobs {
		t.Errorf("ballast_hopeless_owner_max_parked_pods{owner_kind=CronJob} = %v, want %d", n, jobs)
	}
}
