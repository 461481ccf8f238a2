package awstest

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ballast-k8s/ballast/internal/asg"
)

// NewClient returns an internal/asg client of the emulator; hc, when not
// nil, carries its requests (a test's fault injection).
func (s *Server) NewClient(t testing.TB, hc *http.Client) *asg.Client {
	t.Helper()
	o := s.ClientOptions()
	o.HTTPClient = hc
	c, err := asg.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// SplitWorld is the group of incident 7, the fixture of the split tests of
// internal/split and internal/balancer: "cassandra" over three zones with
// 4+1+1 instances, min 3 max 10, instance type i3.xlarge, two instances
// protected from scale-in and a termination hook; the call log is reset.
type SplitWorld struct {
	Emu   *Server
	Clock *clocktesting.FakeClock
	Cloud *asg.Client
	IDs   map[string][]string // by zone
	// Protected are the instances protected from scale-in before the split, sorted.
	Protected []string
}

// NewSplitWorld builds the SplitWorld over three zones, with the tags and
// the termination hook named hook; edit changes the group before it is made.
func NewSplitWorld(t testing.TB, zones []string, hook string, tags map[string]string, edit ...GroupOption) *SplitWorld {
	t.Helper()
	ctx := context.Background()
	w := &SplitWorld{Clock: clocktesting.NewFakeClock(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))}
	w.Emu = NewServer(w.Clock)
	t.Cleanup(w.Emu.Close)
	spec := GroupSpec{Name: "cassandra", Zones: zones, MinSize: 3, MaxSize: 10, InstanceType: "i3.xlarge",
		Tags: tags, Instances: map[string]int{zones[0]: 4, zones[1]: 1, zones[2]: 1}}
	for _, e := range edit {
		e(&spec)
	}
	w.IDs = w.Emu.CreateGroup(spec)
	w.Cloud = w.Emu.NewClient(t, nil)
	w.Protected = []string{w.IDs[zones[0]][1], w.IDs[zones[1]][0]}
	slices.Sort(w.Protected)
	if err := w.Cloud.SetInstanceProtection(ctx, "cassandra", w.Protected, true); err != nil {
		t.Fatal(err)
	}
	if err := w.Cloud.PutLifecycleHook(ctx, asg.Hook{Group: "cassandra", Name: hook, Transition: asg.TransitionTerminating,
		HeartbeatTimeout: 300, DefaultResult: asg.ResultContinue}); err != nil {
		t.Fatal(err)
	}
	w.Emu.Reset()
	return w
}

// GroupOption changes a fixture's group before it is made.
type GroupOption func(*GroupSpec)

// WithImage launches the group's instances from the AMI id.
func WithImage(id string) GroupOption { return func(g *GroupSpec) { g.ImageID = id } }

// WithTargetGroups attaches the target groups to the group: its detached
// instances stay Detaching for the deregistration delay.
func WithTargetGroups(arns ...string) GroupOption {
	return func(g *GroupSpec) { g.TargetGroupARNs = arns }
}

// WithTags adds tags to the group's.
func WithTags(tags map[string]string) GroupOption {
	return func(g *GroupSpec) {
		all := copyTags(g.Tags)
		for k, v := range tags {
			all[k] = v
		}
		g.Tags = all
	}
}

// WithOwnTags pads the group's tags with cost-center/NN tags to n in all
// (AWS allows 50 per group, the split's own among them).
func WithOwnTags(n int) GroupOption {
	return func(g *GroupSpec) {
		tags := copyTags(g.Tags)
		for k := len(tags); k < n; k++ {
			tags[fmt.Sprintf("cost-center/%02d", k)] = "x"
		}
		g.Tags = tags
	}
}

// copyTags copies tags into a new map, never nil.
func copyTags(tags map[string]string) map[string]string {
	out := make(map[string]string, len(tags))
	for k, v := range tags {
		out[k] = v
	}
	return out
}

// WithInstances sets the group's maximum size and its instances by zone.
func WithInstances(maxSize int32, byZone map[string]int) GroupOption {
	return func(g *GroupSpec) { g.MaxSize, g.Instances = maxSize, byZone }
}

// All is every instance the world was made with, sorted.
func (w *SplitWorld) All() []string {
	var out []string
	for _, ids := range w.IDs {
		out = append(out, ids...)
	}
	slices.Sort(out)
	return out
}

// CheckNothingLost fails t unless exactly the world's instances exist, all
// running, each in the group home names for its zone.
func (w *SplitWorld) CheckNothingLost(t testing.TB, home func(zone string) string) {
	t.Helper()
	var got []string
	for _, i := range w.Emu.AllInstances() {
		got = append(got, i.ID)
		if i.EC2State != "running" || i.Group != home(i.Zone) {
			t.Errorf("instance %s is %s (EC2 %s) in group %q, want running in %s", i.ID, i.LifecycleState, i.EC2State, i.Group, home(i.Zone))
		}
	}
	slices.Sort(got)
	if diff := cmp.Diff(w.All(), got); diff != "" {
		t.Errorf("instances (-want, +got): nothing launched, nothing gone\n%s", diff)
	}
}
