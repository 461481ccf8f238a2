package hopeless

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// The cluster of the admission tests: a batch node with the wrong taint, a
// GPU node and two web nodes.
func admissionNodes() []*v1.Node {
	return []*v1.Node{poolNode("b1", "batch", batchTaint), poolNode("gpu-1", "gpu"), poolNode("w1", "web"), poolNode("w2", "web")}
}

func TestPreEnqueue(t *testing.T) {
	gpu := makePod("trainer").NodeSelector(map[string]string{"pool": "gpu"}).Obj()
	tests := []struct {
		name         string
		pod          *v1.Pod
		gateOff      bool
		unsynced     bool
		failOpen     bool
		parkedBefore bool
		wantCode     fwk.Code
		wantMessage  string // prefix
		wantParked   bool
	}{
		{name: "hopeless pod is parked", pod: cronPod("report"), wantCode: fwk.UnschedulableAndUnresolvable, wantMessage: shapes.MessagePrefix, wantParked: true},
		{name: "feasible pod passes", pod: gpu, wantCode: fwk.Success},
		{name: "feasible pod parked before is unparked", pod: gpu, parkedBefore: true, wantCode: fwk.Success},
		{name: "gate off: even a hopeless pod passes", pod: cronPod("report"), gateOff: true, wantCode: fwk.Success},
		{name: "informers not synced: nothing is parked", pod: cronPod("report"), unsynced: true, wantCode: fwk.Success},
		{name: "templates missing: fail open", pod: cronPod("report"), failOpen: true, wantCode: fwk.Success},
		{name: "templates missing: a parked pod is unparked", pod: cronPod("report"), parkedBefore: true, failOpen: true, wantCode: fwk.Success},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ctx := ktesting.NewTestContext(t)
			// A cluster that autoscales and has no templates yet fails open.
			p := newPlainPluginOf(tt.failOpen, admissionNodes()...)
			if tt.parkedBefore {
				p.parking.park(tt.pod, 0, hopelessVerdict(shapes.ReasonTaint, "earlier"), true)
			}
			p.gateAtPreEnqueue = !tt.gateOff
			p.synced = !tt.unsynced
			s := p.PreEnqueue(ctx, tt.pod)
			if s.Code() != tt.wantCode || !strings.HasPrefix(s.Message(), tt.wantMessage) {
				t.Fatalf("status %v, want %v with a message starting %q", s, tt.wantCode, tt.wantMessage)
			}
			if got := p.parked(tt.pod); got != tt.wantParked {
				t.Errorf("parked %v, want %v", got, tt.wantParked)
			}
			var wantReports []report
			if tt.parkedBefore {
				wantReports = append(wantReports, report{tt.pod.Name, shapes.MessagePrefix + "earlier", true})
			}
			if tt.wantParked {
				wantReports = append(wantReports, report{tt.pod.Name, s.Message(), true})
			}
			if diff := cmp.Diff(wantReports, p.reporter.reports, cmp.AllowUnexported(report{})); diff != "" {
				t.Errorf("reports (-want, +got):\n%s", diff)
			}
			var wantCancelled []types.UID
			if tt.parkedBefore && !tt.wantParked {
				wantCancelled = []types.UID{tt.pod.UID}
			}
			if diff := cmp.Diff(wantCancelled, p.reporter.cancelled); diff != "" {
				t.Errorf("cancelled writes (-want, +got):\n%s", diff)
			}
		})
	}
}

func TestPreFilter(t *testing.T) {
	gpu := makePod("trainer").NodeSelector(map[string]string{"pool": "gpu"}).Obj()
	anywhere := makePod("anywhere").Obj()
	tests := []struct {
		name         string
		pod          *v1.Pod
		narrow       bool
		unsynced     bool
		parkedBefore bool
		wantCode     fwk.Code
		wantNodes    sets.Set[string] // nil: no PreFilterResult
		wantParked   bool
	}{
		{name: "hopeless pod is rejected and parked", pod: cronPod("report"), wantCode: fwk.UnschedulableAndUnresolvable, wantParked: true},
		{name: "feasible pod, narrowing off", pod: gpu, wantCode: fwk.Success},
		{name: "feasible pod, narrowed to the few nodes that pass", pod: gpu, narrow: true, wantCode: fwk.Success, wantNodes: sets.New("gpu-1")},
		{name: "feasible pod that most nodes pass is not narrowed", pod: anywhere, narrow: true, wantCode: fwk.Success},
		{name: "feasible pod parked before is unparked", pod: gpu, parkedBefore: true, wantCode: fwk.Success},
		{name: "informers not synced: nothing is rejected", pod: cronPod("report"), unsynced: true, wantCode: fwk.Success},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ctx := ktesting.NewTestContext(t)
			p := newPlainPlugin(admissionNodes()...)
			if tt.parkedBefore {
				p.parking.park(tt.pod, 0, hopelessVerdict(shapes.ReasonTaint, "earlier"), true)
			}
			p.narrowFilter = tt.narrow
			p.synced = !tt.unsynced
			res, s := p.PreFilter(ctx, framework.NewCycleState(), tt.pod, nil)
			if s.Code() != tt.wantCode {
				t.Fatalf("status %v, want %v", s, tt.wantCode)
			}
			var gotNodes sets.Set[string]
			if res != nil {
				gotNodes = res.NodeNames
			}
			if diff := cmp.Diff(tt.wantNodes, gotNodes); diff != "" {
				t.Errorf("narrowed nodes (-want, +got):\n%s", diff)
			}
			if got := p.parked(tt.pod); got != tt.wantParked {
				t.Errorf("parked %v, want %v", got, tt.wantParked)
			}
			if tt.wantParked {
				// Rejected at PreFilter: the scheduler writes the condition.
				want := []report{{tt.pod.Name, s.Message(), false}}
				if diff := cmp.Diff(want, p.reporter.reports, cmp.AllowUnexported(report{})); diff != "" {
					t.Errorf("reports (-want, +got):\n%s", diff)
				}
				if !strings.HasPrefix(s.Message(), shapes.MessagePrefix) {
					t.Errorf("message %q lacks the prefix %q", s.Message(), shapes.MessagePrefix)
				}
			}
		})
	}
	if (&HopelessPods{}).PreFilterExtensions() != nil {
		t.Error("PreFilterExtensions is not nil, but the plugin keeps no per-cycle state")
	}
}

// A pod judged against a store that moved on before it was parked asks
// for a re-check; one judged against the current store does not.
func TestParkJudgedAsksForRecheckWhenTheStoreMoved(t *testing.T) {
	for _, moved := range []bool{false, true} {
		p := newPlainPlugin(poolNode("w1", "web"))
		pod := cronPod("report")
		judged := p.verdicts.generations()
		v, key, ok := p.verdicts.judge(pod)
		if !ok || !v.Hopeless {
			t.Fatalf("verdict %+v ok=%v, want hopeless", v, ok)
		}
		if moved {
			p.store.UpsertNode(poolNode("b1", "batch", batchjobsTaint))
		}
		p.parkJudged(pod, key, v, true, judged)
		if want := map[bool]int{false: 0, true: 1}[moved]; p.rechecks != want {
			t.Errorf("store moved %v: %d re-checks asked, want %d", moved, p.rechecks, want)
		}
	}
}

// SignPod signs exactly the fields the static predicates read: pods that
// differ only elsewhere share a signature (upstream batching stays on).
func TestSignPod(t *testing.T) {
	base := cronPod("a")
	sign := func(pod *v1.Pod) []fwk.SignFragment {
		t.Helper()
		frags, s := (&HopelessPods{}).SignPod(context.Background(), pod)
		if !s.IsSuccess() {
			t.Fatalf("SignPod refused to sign, which turns off upstream batching: %v", s)
		}
		return frags
	}
	var keys []string
	for _, f := range sign(base) {
		keys = append(keys, f.Key)
	}
	if diff := cmp.Diff([]string{fwk.NodeSelectorSignerName, fwk.NodeAffinitySignerName, fwk.TolerationsSignerName, fwk.VolumesSignerName}, keys); diff != "" {
		t.Errorf("fragment keys (-want, +got):\n%s", diff)
	}
	tests := []struct {
		name string
		pod  *v1.Pod
		same bool
	}{
		{"another name", cronPod("b"), true},
		{"a ConfigMap volume", makeVolume(base, v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{}}), true},
		{"another node selector", func() *v1.Pod { p := base.DeepCopy(); p.Spec.NodeSelector = map[string]string{"pool": "web"}; return p }(), false},
		{"another toleration", withToleration(base, v1.Toleration{Key: "x", Operator: v1.TolerationOpExists}), false},
		{"a claim", makeVolume(base, v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}), false},
		{"a required node affinity", func() *v1.Pod {
			p := base.DeepCopy()
			p.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{
				NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{{Key: "zone", Operator: v1.NodeSelectorOpIn, Values: []string{"a"}}}}}}}}
			return p
		}(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if same := cmp.Diff(sign(base), sign(tt.pod)) == ""; same != tt.same {
				t.Errorf("same signature %v, want %v", same, tt.same)
			}
		})
	}
}

func makeVolume(pod *v1.Pod, src v1.VolumeSource) *v1.Pod {
	p := pod.DeepCopy()
	p.Spec.Volumes = append(p.Spec.Volumes, v1.Volume{Name: "v", VolumeSource: src})
	return p
}

// Pods that differ only in what the static predicates do not read share a
// verdict key, hence one verdict; the others do not.
func TestVerdictKey(t *testing.T) {
	p := newPlainPlugin(makeNode("n1").Obj())
	_, base := p.verdicts.requirements(cronPod("a"))
	tests := []struct {
		name string
		pod  *v1.Pod
		same bool
	}{
		{"another pod of the same spec", cronPod("b"), true},
		{"more cpu", resized(cronPod("c"), "2"), false},
		{"another toleration", withToleration(cronPod("d"), v1.Toleration{Key: "x", Operator: v1.TolerationOpExists}), false},
		{"another node selector", func() *v1.Pod { p := cronPod("e"); p.Spec.NodeSelector = nil; return p }(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, key := p.verdicts.requirements(tt.pod); (key == base) != tt.same {
				t.Errorf("same verdict key %v, want %v", key == base, tt.same)
			}
		})
	}
}
