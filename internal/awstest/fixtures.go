package awstest

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

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
func NewSplitWorld(t testing.TB, zones []string, hook string, tags map[string]string, edit ...func(*GroupSpec)) *SplitWorld {
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
