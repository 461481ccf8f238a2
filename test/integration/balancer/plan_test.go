package balancer

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	testutils "k8s.io/kubernetes/test/integration/util"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/balancer"
	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// testPlan: `az-balancer plan` against the real apiserver reads and writes
// nothing, in Kubernetes or AWS, and its table lists what `run` then does.
func testPlan(t *testing.T, server *testutils.TestContext) {
	e := newEnv(t, server, "plan")
	ids := e.groupWithNodes(awstest.GroupSpec{Name: "cassandra", Zones: zones, MaxSize: 10, InstanceType: "i3.xlarge",
		Instances: map[string]int{zones[0]: 2, zones[1]: 1, zones[2]: 1}}, "plan")
	e.bindLocalVolume("data-0", "local-pv-plan-a-0", "plan-a-0")
	e.bindLocalVolume("data-1", "local-pv-plan-b-0", "plan-b-0")
	// A list written an hour ago, which the balancer replaces.
	old := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	data, err := nodegroups.Encode(&nodegroups.NodeGroupList{GeneratedAt: &old, Source: "by-hand", NodeGroups: []nodegroups.NodeGroup{{
		Name: "retired", MaxSize: 3, Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("2"), v1.ResourceMemory: resource.MustParse("4Gi")}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.CoreV1().ConfigMaps(e.ns).Create(e.ctx, &v1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: nodegroups.DefaultName}, Data: data}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.settle()
	before := e.snapshot()
	e.emu.Reset()

	// In process, as cmd/az-balancer calls it...
	planner := balancer.New(e.cs, e.cloud, &record.FakeRecorder{}, e.clock, e.opts, nil)
	planned, err := planner.Plan(e.ctx)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	var table bytes.Buffer
	if err := balancer.PrintPlan(&table, planned); err != nil {
		t.Fatal(err)
	}
	// ...and the binary, with its own flags, kubeconfig and SDK configuration.
	binTable := e.runPlanBinary()
	t.Logf("az-balancer plan:\n%s", binTable)

	wantRows := []string{
		"asg/cassandra SuspendProcesses AZRebalance",
		"asg/cassandra SetInstanceProtection protected=true " + strings.Join(idsOf(ids, "plan-a-0", "plan-b-0"), ","),
		"asg/cassandra PutLifecycleHook " + balancer.HookName,
		"nodes/plan-a-0 patch",
		"nodes/plan-b-0 patch",
		"configmaps/" + e.ns + "/" + nodegroups.DefaultName + " update",
		"event record Warning " + balancer.ReasonMultiZoneGroup,
	}
	for name, out := range map[string]string{"PrintPlan": table.String(), "az-balancer plan": binTable} {
		rows := tableRows(t, out)
		for _, want := range wantRows {
			if !slices.ContainsFunc(rows, func(r string) bool { return strings.HasPrefix(r, want) }) {
				t.Errorf("%s lacks a row %q:\n%s", name, want, out)
			}
		}
		for _, r := range rows {
			if strings.HasPrefix(r, "nodes/") && !strings.HasPrefix(r, "nodes/plan-a-0 ") && !strings.HasPrefix(r, "nodes/plan-b-0 ") {
				t.Errorf("%s plans to write a node that holds no volume: %s", name, r)
			}
		}
	}

	// Nothing was written anywhere.
	if diff := cmp.Diff(before, e.snapshot()); diff != "" {
		t.Errorf("plan wrote to the cluster (-before, +after):\n%s", diff)
	}
	if calls := e.emu.MutatingCalls(); len(calls) != 0 {
		t.Errorf("plan made mutating AWS calls: %v", actions(calls))
	}
	if len(e.emu.Calls()) == 0 {
		t.Error("plan made no AWS call at all: it did not read the groups")
	}
	if got := e.emu.Suspended("cassandra"); len(got) != 0 {
		t.Errorf("plan suspended %v", got)
	}

	// run does what plan listed: the same AWS calls, the same nodes, the ConfigMap.
	e.emu.Reset()
	e.mustReconcile()
	var ran, listed []string
	for _, c := range e.emu.MutatingCalls() {
		ran = append(ran, "asg/"+c.Params.Get("AutoScalingGroupName")+" "+c.Action)
	}
	for _, a := range planned {
		if strings.HasPrefix(a.Target, "asg/") {
			listed = append(listed, a.Target+" "+a.Verb)
		}
	}
	if diff := cmp.Diff(listed, ran); diff != "" {
		t.Errorf("AWS calls of run (+) against plan (-):\n%s", diff)
	}
	after := e.snapshot()
	var written, planWritten []string
	for k, rv := range after {
		if strings.HasPrefix(k, "nodes/") || strings.HasPrefix(k, "configmaps/") {
			if before[k] != rv {
				written = append(written, k)
			}
		}
	}
	for _, a := range planned {
		if strings.HasPrefix(a.Target, "nodes/") || strings.HasPrefix(a.Target, "configmaps/") {
			planWritten = append(planWritten, a.Target)
		}
	}
	slices.Sort(written)
	slices.Sort(planWritten)
	if diff := cmp.Diff(planWritten, written); diff != "" {
		t.Errorf("objects run wrote (+) against plan (-):\n%s", diff)
	}
}

// snapshot maps every node, volume, and the namespace's claims, ConfigMaps
// and events to their resourceVersions.
func (e *env) snapshot() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	nodes, err := e.cs.CoreV1().Nodes().List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, o := range nodes.Items {
		out["nodes/"+o.Name] = o.ResourceVersion
	}
	pvs, err := e.cs.CoreV1().PersistentVolumes().List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, o := range pvs.Items {
		out["persistentvolumes/"+o.Name] = o.ResourceVersion
	}
	pvcs, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, o := range pvcs.Items {
		out["persistentvolumeclaims/"+e.ns+"/"+o.Name] = o.ResourceVersion
	}
	cms, err := e.cs.CoreV1().ConfigMaps(e.ns).List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, o := range cms.Items {
		out["configmaps/"+e.ns+"/"+o.Name] = o.ResourceVersion
	}
	evs, err := e.cs.CoreV1().Events(e.ns).List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, o := range evs.Items {
		out["events/"+e.ns+"/"+o.Name] = o.ResourceVersion
	}
	return out
}

// tableRows returns the rows of a plan table below its header, with the
// columns joined by one space.
func tableRows(t *testing.T, table string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) == 0 || strings.Join(strings.Fields(lines[0]), " ") != "TARGET ACTION DETAIL" {
		t.Fatalf("no plan table header:\n%s", table)
	}
	var rows []string
	for _, l := range lines[1:] {
		rows = append(rows, strings.Join(strings.Fields(l), " "))
	}
	return rows
}

// runPlanBinary builds cmd/az-balancer (or takes BALLAST_AZ_BALANCER_BIN)
// and runs `az-balancer plan` against the apiserver and the emulator; it
// returns the table it prints.
func (e *env) runPlanBinary() string {
	e.t.Helper()
	bin := testenv.Binary(e.t, "az-balancer", "BALLAST_AZ_BALANCER_BIN")
	home := e.t.TempDir()
	cmd := exec.CommandContext(e.ctx, bin, "plan",
		"--kubeconfig", testenv.Kubeconfig(e.t, e.testCtx.KubeConfig, nil),
		"--cluster-name", cluster,
		"--region", "us-east-1",
		"--aws-endpoint", e.emu.URL,
		"--configmap-namespace", e.ns,
	)
	// The SDK's default chain, fed from the environment only.
	cmd.Env = []string{
		"HOME=" + home, "PATH=" + os.Getenv("PATH"),
		"AWS_ACCESS_KEY_ID=AKIDPLAN", "AWS_SECRET_ACCESS_KEY=plan",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + filepath.Join(home, "config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"),
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("az-balancer plan: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	return stdout.String()
}
