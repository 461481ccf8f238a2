package hopeless

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2/ktesting"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/shapes"
)

// templateFixture is a templateConfig over a store, a fake recorder and a
// fake clock, counting the re-checks it asks for.
type templateFixture struct {
	*templateConfig
	recorder *events.FakeRecorder
	clock    *testingclock.FakeClock
	rechecks int
}

func newTemplateFixture(t *testing.T, maxAge time.Duration) *templateFixture {
	registerMetrics()
	f := &templateFixture{recorder: events.NewFakeRecorder(10), clock: testingclock.NewFakeClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))}
	f.templateConfig = &templateConfig{store: shapes.NewStore(&shapes.Options{}, true), recorder: f.recorder, clock: f.clock,
		maxAge: maxAge, logger: ktesting.NewLogger(t, ktesting.DefaultConfig), changed: func() { f.rechecks++ }}
	return f
}

// gpuGroups is a ConfigMap of one GPU node group generated at generatedAt.
func gpuGroups(t *testing.T, generatedAt time.Time) *v1.ConfigMap {
	t.Helper()
	data, err := nodegroups.Encode(&nodegroups.NodeGroupList{GeneratedAt: &generatedAt, Source: "test", NodeGroups: []nodegroups.NodeGroup{{
		Name: "gpu", MaxSize: 5, Labels: map[string]string{"pool": "gpu"},
		Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("8"), v1.ResourcePods: resource.MustParse("110")},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: nodegroups.DefaultName}, Data: data}
}

func TestTemplateConfigStates(t *testing.T) {
	tests := []struct {
		name      string
		apply     func(t *testing.T, f *templateFixture)
		want      shapes.TemplateState
		wantEvent string // prefix of the one event; "": none
	}{
		{name: "fresh templates", apply: func(t *testing.T, f *templateFixture) { f.setConfigMap(gpuGroups(t, f.clock.Now())) }, want: shapes.TemplatesOK},
		{name: "templates older than maxTemplateAge", apply: func(t *testing.T, f *templateFixture) {
			f.setConfigMap(gpuGroups(t, f.clock.Now().Add(-time.Hour)))
		}, want: shapes.TemplatesStale},
		{name: "malformed ConfigMap", apply: func(t *testing.T, f *templateFixture) {
			f.setConfigMap(&v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Data: map[string]string{nodegroups.DataKey: "nodeGroups: 3"}})
		}, want: shapes.TemplatesInvalid, wantEvent: v1.EventTypeWarning + " " + InvalidNodeGroupsReason + " " + Name + ": parking no pods until fixed"},
		// A ConfigMap without the list (az-balancer keeps only what it
		// remembers of the groups' nodes in it until it can publish one) is
		// no list: missing, fail-open, nothing to report.
		{name: "ConfigMap without the data key", apply: func(t *testing.T, f *templateFixture) {
			f.setConfigMap(&v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}})
		}, want: shapes.TemplatesMissing},
		{name: "ConfigMap with only az-balancer's memory", apply: func(t *testing.T, f *templateFixture) {
			f.setConfigMap(&v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Data: map[string]string{"last-good-nodes.json": "{}"}})
		}, want: shapes.TemplatesMissing},
		{name: "list removed from the ConfigMap", apply: func(t *testing.T, f *templateFixture) {
			f.setConfigMap(gpuGroups(t, f.clock.Now()))
			f.setConfigMap(&v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Data: map[string]string{"last-good-nodes.json": "{}"}})
		}, want: shapes.TemplatesMissing},
		{name: "ConfigMap deleted", apply: func(t *testing.T, f *templateFixture) {
			f.setConfigMap(gpuGroups(t, f.clock.Now()))
			f.deleted()
		}, want: shapes.TemplatesMissing},
		{name: "fresh templates age past maxTemplateAge", apply: func(t *testing.T, f *templateFixture) {
			f.setConfigMap(gpuGroups(t, f.clock.Now()))
			f.clock.Step(11 * time.Minute)
			f.checkStaleness(f.logger)
		}, want: shapes.TemplatesStale},
		{name: "stale templates rewritten fresh", apply: func(t *testing.T, f *templateFixture) {
			f.setConfigMap(gpuGroups(t, f.clock.Now().Add(-time.Hour)))
			f.setConfigMap(gpuGroups(t, f.clock.Now()))
		}, want: shapes.TemplatesOK},
		{name: "invalid templates do not turn stale", apply: func(t *testing.T, f *templateFixture) {
			f.setConfigMap(&v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Data: map[string]string{nodegroups.DataKey: "nodeGroups: 3"}})
			f.clock.Step(time.Hour)
			f.checkStaleness(f.logger)
		}, want: shapes.TemplatesInvalid, wantEvent: v1.EventTypeWarning + " " + InvalidNodeGroupsReason + " "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTemplateFixture(t, 10*time.Minute)
			tt.apply(t, f)
			if got := f.store.(*shapes.Store).TemplateState(); got != tt.want {
				t.Errorf("store's template state %q, want %q", got, tt.want)
			}
			if f.rechecks == 0 {
				t.Error("a template change asked for no re-check of the parked pods")
			}
			var got []string
			for len(f.recorder.Events) > 0 {
				got = append(got, <-f.recorder.Events)
			}
			switch {
			case tt.wantEvent == "" && len(got) != 0:
				t.Errorf("events %q, want none", got)
			case tt.wantEvent != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tt.wantEvent)):
				t.Errorf("events %q, want one starting %q", got, tt.wantEvent)
			}
		})
	}
}

// The staleness check runs often enough to notice within a quarter of
// maxTemplateAge, at most every 30s, and never spins.
func TestStalenessPeriod(t *testing.T) {
	for maxAge, want := range map[time.Duration]time.Duration{
		0:                maxStalenessPeriod,
		time.Minute:      15 * time.Second,
		10 * time.Minute: maxStalenessPeriod,
	} {
		if got := newTemplateFixture(t, maxAge).stalenessPeriod(); got != want {
			t.Errorf("maxTemplateAge %v: period %v, want %v", maxAge, got, want)
		}
	}
}

// watchStaleness, on its clock: the templates turn stale once the clock
// passes maxTemplateAge, with no other event.
func TestWatchStaleness(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	f := newTemplateFixture(t, time.Minute)
	f.setConfigMap(gpuGroups(t, f.clock.Now()))
	go f.watchStaleness(ctx)
	store := f.store.(*shapes.Store)
	waitFor(t, 5*time.Second, "the templates turned stale", func() bool {
		if f.clock.HasWaiters() {
			f.clock.Step(f.stalenessPeriod())
		}
		return store.TemplateState() == shapes.TemplatesStale
	})
	if diff := cmp.Diff(shapes.TemplatesStale, store.TemplateState()); diff != "" {
		t.Errorf("state (-want, +got):\n%s", diff)
	}
}
