package split_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/ptr"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

// groupEnd is what a split leaves of a group.
type groupEnd struct {
	awstest.GroupView
	Suspended []string
	Hooks     []awstest.Hook
	Instances []string // id, lifecycle state, "protected"
}

func endState(emu *awstest.Server) map[string]groupEnd {
	out := map[string]groupEnd{}
	for _, name := range emu.GroupNames() {
		g, _ := emu.Group(name)
		e := groupEnd{GroupView: g, Suspended: emu.Suspended(name), Hooks: emu.Hooks(name)}
		slices.Sort(e.Suspended)
		for _, i := range emu.GroupInstances(name) {
			s := i.ID + " " + i.LifecycleState
			if i.ProtectedFromScaleIn {
				s += " protected"
			}
			e.Instances = append(e.Instances, s)
		}
		slices.Sort(e.Instances)
		out[name] = e
	}
	return out
}

func instanceLines(ids []string, protected []string) []string {
	var out []string
	for _, id := range ids {
		s := id + " InService"
		if slices.Contains(protected, id) {
			s += " protected"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func TestSplit(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	actions, err := w.finish(ctx, w.splitter(w.cloud, "cli"), "cassandra")
	if err != nil {
		t.Fatal(err)
	}
	w.clock.Step(time.Minute) // the last attached instances leave Pending
	hook := []awstest.Hook{{Name: hookName, Transition: asg.TransitionTerminating, DefaultResult: asg.ResultContinue, HeartbeatTimeout: 300, GlobalTimeout: 30000}}
	zoneTags := caTags(map[string]string{nodeTemplateTag: "cassandra", "team": "db", split.TagFrom: "cassandra"})
	zoneGroup := func(z string, min, max int32) groupEnd {
		return groupEnd{
			GroupView: awstest.GroupView{Name: "cassandra-" + z, Zones: []string{z}, MinSize: min, MaxSize: max, Desired: int32(len(w.ids[z])),
				LaunchTemplateID: "lt-cassandra", Tags: zoneTags},
			Hooks: hook, Instances: instanceLines(w.ids[z], w.prot),
		}
	}
	want := map[string]groupEnd{
		"cassandra": {
			GroupView: awstest.GroupView{Name: "cassandra", Zones: zones, LaunchTemplateID: "lt-cassandra",
				Tags: map[string]string{nodeTemplateTag: "cassandra", "team": "db", split.TagState: "done"}},
			Suspended: []string{"AZRebalance", "Launch", "Terminate"}, Hooks: hook,
		},
		// min = min(ceil(3/3), n), max = max(ceil(10/3), n)
		"cassandra-us-east-1a": zoneGroup(zones[0], 1, 4),
		"cassandra-us-east-1b": zoneGroup(zones[1], 1, 4),
		"cassandra-us-east-1c": zoneGroup(zones[2], 1, 4),
	}
	if diff := cmp.Diff(want, endState(w.emu)); diff != "" {
		t.Errorf("end state (-want, +got):\n%s", diff)
	}
	w.checkNothingLost(t)
	if c := w.emu.Counts(); c["TerminateInstanceInAutoScalingGroup"]+c["DeleteAutoScalingGroup"] != 0 {
		t.Errorf("calls %v: a split terminates and deletes nothing", c)
	}
	if len(actions) == 0 {
		t.Error("Split returned no actions")
	}

	// A second run has nothing to do, and the old group is no longer discovered.
	w.emu.Reset()
	if actions, err := w.finish(ctx, w.splitter(w.cloud, "cli"), "cassandra"); err != nil || len(actions) != 0 {
		t.Errorf("second split: %v, %v; want nothing to do", actions, err)
	}
	if m := w.emu.MutatingCalls(); len(m) != 0 {
		t.Errorf("second split made %d writes", len(m))
	}
	groups, err := w.cloud.DescribeGroups(ctx, asg.AutoDiscovery(cluster))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range groups {
		names = append(names, g.Name)
	}
	if diff := cmp.Diff([]string{"cassandra-us-east-1a", "cassandra-us-east-1b", "cassandra-us-east-1c"}, names); diff != "" {
		t.Errorf("groups cluster-autoscaler discovers (-want, +got):\n%s", diff)
	}
}

// TestSplitResumesAfterCrash crashes a split after each of its AWS calls in
// turn, runs it again, and wants the state of a split that never crashed,
// with every instance alive.
func TestSplitResumesAfterCrash(t *testing.T) {
	clean := newSplitWorld(t)
	if _, err := clean.finish(context.Background(), clean.splitter(clean.cloud, "cli"), "cassandra"); err != nil {
		t.Fatal(err)
	}
	clean.clock.Step(time.Minute) // the last attached instances leave Pending
	want := endState(clean.emu)
	total := len(clean.emu.Calls())
	t.Logf("a clean split makes %d calls: %v", total, clean.emu.Counts())
	if total < 20 {
		t.Fatalf("a clean split made %d calls; the test would prove little", total)
	}
	for n := 1; n <= total; n++ {
		t.Run(fmt.Sprintf("crash after call %d", n), func(t *testing.T) {
			w := newSplitWorld(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			crashing := w.client(t, &http.Client{Transport: &crashAfter{n: n, cancel: cancel}})
			if _, err := w.finish(ctx, w.splitter(crashing, "cli"), "cassandra"); err == nil {
				t.Fatal("the crashed split reported success")
			}
			if got := len(w.emu.Calls()); got != n {
				t.Fatalf("%d calls reached AWS, want %d", got, n)
			}
			// Once the split has begun writing, AWS may not replace anything
			// until it is resumed (before that, the group is as it was, its
			// lock claimed at most).
			began := slices.ContainsFunc(w.emu.MutatingCalls(), func(c awstest.Call) bool {
				return c.Action != "CreateOrUpdateTags" || c.Params.Get("Tags.member.1.Key") != split.TagLock
			})
			if began {
				if got := w.emu.AZRebalance(); len(got) != 0 {
					t.Errorf("AZRebalance after crash %d terminated %v", n, got)
				}
			}
			if _, err := w.finish(context.Background(), w.splitter(w.cloud, "cli"), "cassandra"); err != nil {
				t.Fatalf("resuming: %v", err)
			}
			w.clock.Step(time.Minute)
			if diff := cmp.Diff(want, endState(w.emu)); diff != "" {
				t.Errorf("end state (-clean run, +crashed and resumed):\n%s", diff)
			}
			w.checkNothingLost(t)
		})
	}
}

// TestPlanMatchesPass: Plan writes nothing and lists the writes the next
// pass then makes, call for call, at every pass of a split.
func TestPlanMatchesPass(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	s := w.splitter(w.cloud, "cli")
	if _, err := s.Pass(ctx, "cassandra"); err != nil { // claims the lock
		t.Fatal(err)
	}
	w.clock.Step(split.DefaultLockSettle)
	for pass := 0; ; pass++ {
		w.emu.Reset()
		plan, err := s.Plan(ctx, "cassandra")
		if err != nil {
			t.Fatal(err)
		}
		if m := w.emu.MutatingCalls(); len(m) != 0 {
			t.Fatalf("plan made writes: %v", m)
		}
		var planned []string
		for _, a := range plan.Steps {
			planned = append(planned, a.Target+" "+a.Verb)
		}
		res, err := s.Pass(ctx, "cassandra")
		if err != nil {
			t.Fatal(err)
		}
		var made []string
		for _, c := range w.emu.MutatingCalls() {
			target := c.Params.Get("AutoScalingGroupName")
			if target == "" {
				target = c.Params.Get("Tags.member.1.ResourceId")
			}
			made = append(made, "asg/"+target+" "+c.Action)
		}
		if diff := cmp.Diff(planned, made); diff != "" {
			t.Errorf("pass %d: planned steps (-plan, +made):\n%s", pass, diff)
		}
		if res.Done {
			break
		}
		if pass > 50 {
			t.Fatal("the split did not finish")
		}
		w.clock.Step(split.DefaultLockSettle)
	}
}

// TestSplitMixedInstancesAndSubnets: a mixed instances policy group in
// subnets gets per-zone copies of the policy and its zone's subnets.
func TestSplitMixedInstancesAndSubnets(t *testing.T) {
	w := newEmptyWorld(t)
	for i, z := range zones {
		w.emu.AddSubnet(fmt.Sprintf("subnet-%d1", i), z)
		w.emu.AddSubnet(fmt.Sprintf("subnet-%d2", i), z)
	}
	w.ids = w.emu.CreateGroup(awstest.GroupSpec{Name: "spot", Zones: zones[:2], Subnets: []string{"subnet-01", "subnet-11", "subnet-02", "subnet-12"},
		MaxSize: 5, InstanceType: "m5.large", OverrideTypes: []string{"m5.large", "m5a.large"}, Tags: caTags(nil), Instances: map[string]int{zones[0]: 2, zones[1]: 1}})
	if _, err := w.finish(context.Background(), w.splitter(w.cloud, "cli"), "spot"); err != nil {
		t.Fatal(err)
	}
	for i, z := range zones[:2] {
		g, ok := w.emu.Group("spot-" + z)
		if !ok {
			t.Fatalf("no group spot-%s", z)
		}
		want := awstest.GroupView{Name: "spot-" + z, Zones: []string{z}, Subnets: []string{fmt.Sprintf("subnet-%d1", i), fmt.Sprintf("subnet-%d2", i)},
			MinSize: 0, MaxSize: max(3, int32(len(w.ids[z]))), Desired: int32(len(w.ids[z])), LaunchTemplateID: "lt-spot",
			OverrideTypes: []string{"m5.large", "m5a.large"}, Tags: caTags(map[string]string{split.TagFrom: "spot"})}
		if diff := cmp.Diff(want, g); diff != "" {
			t.Errorf("spot-%s (-want, +got):\n%s", z, diff)
		}
	}
}

// TestSplitWaitsForHeldInstance: an instance AWS is terminating (held by a
// hook) cannot be detached; the split moves the rest, does not empty the old
// group, and finishes once the instance is gone.
func TestSplitWaitsForHeldInstance(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	held := w.emu.AZRebalance() // the zone recovered before anyone suspended AZRebalance
	if len(held) == 0 {
		t.Fatal("AZRebalance terminated nothing")
	}
	s := w.splitter(w.cloud, "cli")
	res, _ := w.run(ctx, s, "cassandra", 50, split.DefaultLockSettle, func(_ int, res split.Result, err error) bool {
		if err != nil {
			t.Fatal(err)
		}
		// Stop once there is nothing left to do but wait for it (attached instances are Pending for a while first).
		return len(res.Steps) == 0 && slices.ContainsFunc(res.Waiting, func(s string) bool { return strings.Contains(s, held[0]) })
	})
	if res.Done || !slices.ContainsFunc(res.Waiting, func(s string) bool { return strings.Contains(s, held[0]+" is Terminating:Wait") }) {
		t.Fatalf("result %+v, want waiting for the held instance %s", res, held[0])
	}
	if g, _ := w.emu.Group("cassandra"); g.MaxSize == 0 || g.Tags[split.TagState] == "done" {
		t.Errorf("old group emptied for good (%+v) while an instance is still in it", g)
	}
	for _, id := range held {
		if err := w.cloud.CompleteLifecycleAction(ctx, "cassandra", hookName, id, asg.ResultContinue); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.finish(ctx, s, "cassandra"); err != nil {
		t.Fatal(err)
	}
	if g, _ := w.emu.Group("cassandra"); g.MaxSize != 0 || g.Tags[split.TagState] != "done" || len(w.emu.GroupInstances("cassandra")) != 0 {
		t.Errorf("old group %+v with %d instances, want empty and done", g, len(w.emu.GroupInstances("cassandra")))
	}
	for _, i := range w.emu.AllInstances() {
		if slices.Contains(held, i.ID) {
			continue
		}
		if i.EC2State != "running" || i.Group != split.ZoneGroupName("cassandra", i.Zone) {
			t.Errorf("instance %s is %s in %q", i.ID, i.EC2State, i.Group)
		}
	}
}

// TestSplitBatchesFitTheStateTag: batches are cut so that the state tag
// stays within 256 characters and each call within 20 instances.
func TestSplitBatchesFitTheStateTag(t *testing.T) {
	w := newEmptyWorld(t)
	emu := w.emu
	long := []string{"us-west-2-lax-1a", "us-west-2-lax-1b"}
	emu.CreateGroup(awstest.GroupSpec{Name: "big", Zones: long, MaxSize: 60, InstanceType: "m5.large", Tags: caTags(nil),
		Instances: map[string]int{long[0]: 25, long[1]: 3}})
	if _, err := w.finish(context.Background(), w.splitter(w.cloud, "cli"), "big"); err != nil {
		t.Fatal(err)
	}
	batches := 0
	for _, c := range emu.Calls() {
		switch c.Action {
		case "CreateOrUpdateTags":
			if v := c.Params.Get("Tags.member.1.Value"); strings.HasPrefix(v, "move ") {
				batches++
			}
		case "DetachInstances", "AttachInstances":
			if n := len(strings.Split(strings.Join(paramsWithPrefix(c.Params, "InstanceIds.member."), ","), ",")); n > asg.MaxMoveBatch {
				t.Errorf("%s with %d instances", c.Action, n)
			}
		}
	}
	if batches < 3 { // 25 instances do not fit in one tag value
		t.Errorf("%d batches, want at least 3", batches)
	}
	if n := len(emu.GroupInstances("big-" + long[0])); n != 25 {
		t.Errorf("%d instances moved to big-%s, want 25", n, long[0])
	}
}

func paramsWithPrefix(p map[string][]string, prefix string) []string {
	var out []string
	for k, v := range p {
		if strings.HasPrefix(k, prefix) {
			out = append(out, v...)
		}
	}
	return out
}

// TestSplitSurvivesCapacityShortage is incident 7 again, with and without the
// split: a zone runs short, the groups scale out elsewhere, the zone
// recovers, and AZRebalance runs. The multi-zone group loses instances; the
// per-zone groups lose none, though AZRebalance is not suspended on them.
func TestSplitSurvivesCapacityShortage(t *testing.T) {
	ctx := context.Background()
	scenario := func(t *testing.T, splitFirst bool) []string {
		w := newSplitWorld(t)
		groups := []string{"cassandra"}
		if splitFirst {
			if _, err := w.finish(ctx, w.splitter(w.cloud, "cli"), "cassandra"); err != nil {
				t.Fatal(err)
			}
			groups = nil
			for _, z := range zones {
				groups = append(groups, split.ZoneGroupName("cassandra", z))
				if s := w.emu.Suspended(split.ZoneGroupName("cassandra", z)); len(s) != 0 {
					t.Fatalf("%s has %v suspended; the test would prove nothing", split.ZoneGroupName("cassandra", z), s)
				}
			}
		}
		w.emu.RefuseLaunches(zones[1], true)
		for _, g := range groups { // cluster-autoscaler asks every group for 2 more
			v, _ := w.emu.Group(g)
			if err := w.cloud.UpdateGroupSize(ctx, g, asg.Sizes{Max: ptr.To(v.MaxSize + 2), Desired: ptr.To(v.Desired + 2)}); err != nil {
				t.Fatal(err)
			}
		}
		w.emu.RefuseLaunches(zones[1], false)
		terminated := w.emu.AZRebalance()
		for _, id := range w.all() {
			if i, _ := w.emu.Instance(id); i.EC2State != "running" && !slices.Contains(terminated, id) {
				t.Errorf("instance %s is %s", id, i.EC2State)
			}
		}
		return terminated
	}
	t.Run("multi-zone group", func(t *testing.T) {
		if got := scenario(t, false); len(got) == 0 {
			t.Error("AZRebalance terminated nothing in the multi-zone group; the scenario does not reproduce the incident")
		}
	})
	t.Run("one group per zone", func(t *testing.T) {
		if got := scenario(t, true); len(got) != 0 {
			t.Errorf("AZRebalance terminated %v after the split", got)
		}
	})
}

func TestSplitRefusesSingleZoneAndForeignGroups(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	w.emu.CreateGroup(awstest.GroupSpec{Name: "one", Zones: zones[:1], MaxSize: 1, InstanceType: "m5.large"})
	s := w.splitter(w.cloud, "cli")
	if _, err := s.Pass(ctx, "one"); err == nil || !strings.Contains(err.Error(), "nothing to split") {
		t.Errorf("error %v, want nothing to split", err)
	}
	if _, err := s.Pass(ctx, "missing"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("error %v, want not found", err)
	}
	// A group by the name of a zone group that the split did not make is never adopted.
	w.emu.CreateGroup(awstest.GroupSpec{Name: split.ZoneGroupName("cassandra", zones[2]), Zones: zones[2:], MaxSize: 1, InstanceType: "m5.large"})
	if _, err := s.Pass(ctx, "cassandra"); err == nil || !strings.Contains(err.Error(), "was not split from cassandra") {
		t.Errorf("error %v, want a refusal to adopt", err)
	}
	if m := w.emu.MutatingCalls(); len(m) != 0 {
		t.Errorf("refused splits made %d writes", len(m))
	}
}

// TestSplitNeverLosesADetachingInstance is defect 1 of issue 11: behind a
// load balancer, instances stay Detaching for the 300 s deregistration delay
// while the loop passes every 30 s. The batch in flight stays on record until
// it is attached, so every instance ends in its zone's group.
func TestSplitNeverLosesADetachingInstance(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t, awstest.WithTargetGroups("arn:aws:elasticloadbalancing:us-east-1:0:targetgroup/cql/1"))
	s := w.splitter(w.cloud, "run")
	res, _ := w.run(ctx, s, "cassandra", 100, 30*time.Second, func(pass int, res split.Result, err error) bool {
		if err != nil {
			t.Fatalf("pass %d: %v", pass, err)
		}
		// Never a second batch recorded while one is detaching.
		v, _ := w.emu.Group("cassandra")
		detaching := 0
		for _, i := range w.emu.GroupInstances("cassandra") {
			if i.LifecycleState == "Detaching" {
				detaching++
				if !strings.Contains(v.Tags[split.TagState], i.ID) {
					t.Fatalf("pass %d: instance %s is detaching but not on record (state %q)", pass, i.ID, v.Tags[split.TagState])
				}
			}
		}
		return res.Done
	})
	if !res.Done {
		t.Fatal("the split did not finish")
	}
	w.checkNothingLost(t)
}

// TestSplitLockExcludes: two splitters (the CLI and the loop) never both make
// split steps on one group. The first to claim the free lock holds it once it
// has settled; a claim that raced it and landed later wins instead, and the
// first backs off; a crashed holder's lock lapses after its duration.
func TestSplitLockExcludes(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	cli, loop := w.splitter(w.cloud, "cli"), w.splitter(w.cloud, "run")
	writes := func() int { return len(w.emu.MutatingCalls()) }

	res, err := cli.Pass(ctx, "cassandra")
	if err != nil || len(res.Steps) != 1 || !strings.Contains(res.Steps[0].Detail, split.TagLock+"=cli ") {
		t.Fatalf("first pass %+v, %v: want the lock claimed and nothing else", res, err)
	}
	// The loop finds the lock claimed: it waits and writes nothing.
	w.emu.Reset()
	if _, err := loop.Pass(ctx, "cassandra"); !errors.Is(err, split.ErrLocked) || writes() != 0 {
		t.Fatalf("loop while the CLI holds the lock: %v with %d writes, want ErrLocked and none", err, writes())
	}
	// The loop read the lock free just before the CLI's claim landed, and
	// claimed it after: the later claim stays in AWS, and only its author goes on.
	if err := w.cloud.SetGroupTags(ctx, "cassandra", map[string]string{split.TagLock: "run " + w.clock.Now().UTC().Format(time.RFC3339) + " " + w.clock.Now().Add(split.DefaultLockDuration).UTC().Format(time.RFC3339)}); err != nil {
		t.Fatal(err)
	}
	w.clock.Step(split.DefaultLockSettle)
	w.emu.Reset()
	if _, err := cli.Pass(ctx, "cassandra"); !errors.Is(err, split.ErrLocked) || writes() != 0 {
		t.Fatalf("CLI whose claim was overwritten: %v with %d writes, want ErrLocked and none", err, writes())
	}
	res, err = loop.Pass(ctx, "cassandra")
	if err != nil || len(res.Steps) < 3 {
		t.Fatalf("loop holding the settled lock: %+v, %v; want split steps", res, err)
	}
	// The loop crashes. Until its lock lapses the CLI may not go on; then it does.
	w.clock.Step(split.DefaultLockDuration - split.DefaultLockSettle - time.Second)
	if _, err := cli.Pass(ctx, "cassandra"); !errors.Is(err, split.ErrLocked) {
		t.Fatalf("CLI before the loop's lock lapsed: %v, want ErrLocked", err)
	}
	w.clock.Step(time.Second)
	if _, err := w.finish(ctx, cli, "cassandra"); err != nil {
		t.Fatalf("CLI after the loop's lock lapsed: %v", err)
	}
	w.checkNothingLost(t)
	if g, _ := w.emu.Group("cassandra"); g.Tags[split.TagLock] != "" {
		t.Errorf("lock %q left on the finished group", g.Tags[split.TagLock])
	}
	// Release drops only one's own lock.
	w2 := newSplitWorld(t)
	a, b := w2.splitter(w2.cloud, "a"), w2.splitter(w2.cloud, "b")
	if _, err := a.Pass(ctx, "cassandra"); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(ctx, "cassandra"); err != nil {
		t.Fatal(err)
	}
	if g, _ := w2.emu.Group("cassandra"); !strings.HasPrefix(g.Tags[split.TagLock], "a ") {
		t.Errorf("b released a's lock: %q", g.Tags[split.TagLock])
	}
	if err := a.Release(ctx, "cassandra"); err != nil {
		t.Fatal(err)
	}
	if g, _ := w2.emu.Group("cassandra"); g.Tags[split.TagLock] != "" {
		t.Errorf("a's lock %q left after its release", g.Tags[split.TagLock])
	}
}
