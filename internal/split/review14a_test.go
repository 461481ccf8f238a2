package split_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/split"
)

// TestReview14aZoneGroupLaunchHookKeepsTheBatchInNoGroup (review 14a,
// against 56fa41d): a launch lifecycle hook with DefaultResult ABANDON on a
// per-zone group makes the split keep the batch in flight detached, running
// in no Auto Scaling group, for as long as the hook is there, on the premise
// that an attached instance goes through the group's launch hooks
// (Pending:Wait) and could be terminated at the hook's timeout. AWS
// documents the opposite: the user guide's "Lifecycle hook availability"
// table (lifecycle-hooks.html) says the instance launch and termination
// hooks apply to all launches and terminations, and its footnote that they
// do not apply "when you attach or detach instances, move instances in and
// out of standby mode, or delete the group with the force delete option".
// An attached instance is never held by, nor abandoned by, a launch hook.
// And DefaultResult ABANDON is what PutLifecycleHook gives a hook when none
// is named (API_PutLifecycleHook, DefaultResult: "The default value is
// ABANDON"): every bootstrap hook put on a per-zone group without naming
// its default (CLI, console, Terraform's default) has it.
//
// So the split holds a running instance (a Cassandra node with its local
// data) outside every group, invisible to cluster-autoscaler and to the
// group's capacity, and never finishes, on a danger AWS says does not
// exist: the instance should be attached.
func TestReview14aZoneGroupLaunchHookKeepsTheBatchInNoGroup(t *testing.T) {
	ctx, w, s, mi := newLeavingWorld(t)
	zg := split.ZoneGroupName("cassandra", mi.Zone)
	// The platform team adds its bootstrap hook to the new per-zone group
	// without naming a default result: AWS gives it ABANDON.
	if err := w.cloud.PutLifecycleHook(ctx, asg.Hook{Group: zg, Name: "bootstrap", Transition: "autoscaling:EC2_INSTANCE_LAUNCHING",
		HeartbeatTimeout: 300, DefaultResult: "ABANDON"}); err != nil {
		t.Fatal(err)
	}
	var last split.Result
	for range 30 {
		w.clock.Step(split.DefaultLockSettle)
		res, err := s.Pass(ctx, "cassandra")
		if err != nil && !errors.Is(err, split.ErrRefused) {
			t.Logf("pass: %v", err)
		}
		last = res
	}
	i, _ := w.emu.Instance(mi.ID)
	if i.EC2State == "running" && i.Group == "" {
		t.Errorf("instance %s runs in no group 30 passes (%s) after a launch hook was put on %s; AWS does not apply launch hooks to attached instances, so nothing justifies keeping it out of every group (waiting: %v)",
			mi.ID, 30*split.DefaultLockSettle, zg, last.Waiting)
	}
	w.checkNoneLoose(t, "30 passes after a launch hook with the default DefaultResult was put on a per-zone group")
}

// TestReview14aZoneGroupTagFromLostMidSplitStrandsTheBatch (review 14a,
// against 5b8377d and 1258b88): the refusal of "a foreign group named like a
// per-zone group" is made in snapshot, before steps ever looks at the batch
// in flight, and on every pass, whatever the split's state. A per-zone group
// the split itself created that loses its split-from tag mid-split (the
// platform's IaC adopting the new groups and pruning the tags it does not
// manage, a hand edit: API_DeleteTags and API_CreateOrUpdateTags take any
// key) is taken for a foreign group, and every later pass returns
// ErrRefused: the batch already detached is never attached, and its
// instances run in no group, outside cluster-autoscaler's view, with their
// local data. 1258b88 and 66e3019 made the two other mid-split refusals
// (an ABANDON launch hook, a malformed split-sizes tag) wait for the batch
// in flight to be attached first; this one was left out. The batch's own
// zone group is still the split's (it holds instances the split moved, and
// the TagState names it), and even a group of another zone is no reason
// not to finish the batch.
func TestReview14aZoneGroupTagFromLostMidSplitStrandsTheBatch(t *testing.T) {
	for _, tc := range []struct {
		name  string
		which func(batchZone string) string // the zone whose group loses the tag
	}{
		{name: "the batch's zone group", which: func(z string) string { return z }},
		{name: "another zone's group", which: func(z string) string {
			for _, o := range zones {
				if o != z {
					return o
				}
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, w, s, mi := newLeavingWorld(t)
			zg := split.ZoneGroupName("cassandra", tc.which(mi.Zone))
			if g, ok := w.emu.Group(zg); !ok || g.Tags[split.TagFrom] != "cassandra" {
				t.Fatalf("per-zone group %s: %v, %v", zg, ok, g.Tags)
			}
			if err := w.cloud.DeleteGroupTags(ctx, zg, []string{split.TagFrom}); err != nil {
				t.Fatal(err)
			}
			var last error
			for range 20 {
				w.clock.Step(split.DefaultLockSettle)
				if _, err := s.Pass(ctx, "cassandra"); err != nil {
					last = err
				}
			}
			t.Logf("last pass: %v", last)
			w.checkNoneLoose(t, "20 passes after "+zg+" lost its "+split.TagFrom+" tag mid-split")
		})
	}
}

// hookTargets answers DescribeLifecycleHooks of group with the notification
// target, role and metadata of hook, as AWS does for a hook put with them
// (API_LifecycleHook: NotificationTargetARN, RoleARN, NotificationMetadata;
// the emulator keeps none of the three), and records every
// CreateAutoScalingGroup and PutLifecycleHook request.
type hookTargets struct {
	group, hook string
	mu          sync.Mutex
	writes      []url.Values
}

const (
	drainTarget   = "arn:aws:sqs:us-east-1:000000000000:cassandra-decommission"
	drainRole     = "arn:aws:iam::000000000000:role/asg-lifecycle-sqs"
	drainMetadata = `{"action":"nodetool decommission"}`
)

func (h *hookTargets) RoundTrip(r *http.Request) (*http.Response, error) {
	form, err := readForm(r)
	if err != nil {
		return nil, err
	}
	action := form.Get("Action")
	if action == "CreateAutoScalingGroup" || action == "PutLifecycleHook" {
		h.mu.Lock()
		h.writes = append(h.writes, form)
		h.mu.Unlock()
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || action != "DescribeLifecycleHooks" || form.Get("AutoScalingGroupName") != h.group {
		return resp, err
	}
	name := "<LifecycleHookName>" + h.hook + "</LifecycleHookName>"
	var meta bytes.Buffer
	xmlEscape(&meta, drainMetadata)
	return rewriteBody(resp, func(out []byte) []byte {
		return bytes.ReplaceAll(out, []byte(name), []byte(name+"<NotificationTargetARN>"+drainTarget+"</NotificationTargetARN><RoleARN>"+drainRole+"</RoleARN><NotificationMetadata>"+meta.String()+"</NotificationMetadata>"))
	})
}

func xmlEscape(b *bytes.Buffer, s string) {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
	b.WriteString(r.Replace(s))
}

// TestReview14aZoneGroupsLoseTheHooksNotificationTarget (review 14a): the
// split creates the per-zone groups "from G's ... lifecycle hooks" (package
// doc) so that whatever holds a termination in G holds it in G-z. A
// lifecycle hook is more than its name, transition, timeout and default: a
// hook put with a NotificationTargetARN (an SQS queue or SNS topic, with
// the RoleARN that lets Auto Scaling publish to it, and its
// NotificationMetadata) is how its consumer hears of the instances it
// holds (API_PutLifecycleHook: "NotificationTargetARN: The Amazon Resource
// Name (ARN) of the notification target that Amazon EC2 Auto Scaling uses
// to notify you when an instance is in a wait state for the lifecycle
// hook"). asg.Hook keeps none of the three, so every per-zone group gets
// the hook without its target: its consumer (here a decommission job that
// streams a Cassandra node's data off before termination) is never told,
// the instance waits out the heartbeat timeout and the default result
// terminates it with the job never run. The zone group's hook must keep
// the target, role and metadata of G's.
func TestReview14aZoneGroupsLoseTheHooksNotificationTarget(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	if err := w.cloud.PutLifecycleHook(ctx, asg.Hook{Group: "cassandra", Name: "decommission", Transition: asg.TransitionTerminating,
		HeartbeatTimeout: 1800, DefaultResult: "CONTINUE"}); err != nil {
		t.Fatal(err)
	}
	ht := &hookTargets{group: "cassandra", hook: "decommission"}
	s := w.splitter(w.client(t, &http.Client{Transport: ht}), "run")
	// The hook as the SDK reads it from an AWS-shaped answer: with its target.
	raw := w.rawAutoscaling(&http.Client{Transport: ht})
	out, err := raw.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: awssdk.String("cassandra"),
		LifecycleHookNames: []string{"decommission"}})
	if err != nil || len(out.LifecycleHooks) != 1 || awssdk.ToString(out.LifecycleHooks[0].NotificationTargetARN) != drainTarget ||
		awssdk.ToString(out.LifecycleHooks[0].NotificationMetadata) != drainMetadata {
		t.Fatalf("setup: DescribeLifecycleHooks of cassandra: %+v, %v", out, err)
	}
	w.untilABatchLeaves(ctx, t, s)
	ht.mu.Lock()
	defer ht.mu.Unlock()
	created := 0
	for _, form := range ht.writes {
		if form.Get("Action") != "CreateAutoScalingGroup" {
			continue
		}
		created++
		found := false
		for n := 1; ; n++ {
			p := "LifecycleHookSpecificationList.member." + strconv.Itoa(n)
			name, ok := form[p+".LifecycleHookName"]
			if !ok {
				break
			}
			if name[0] != "decommission" {
				continue
			}
			found = true
			if got := form.Get(p + ".NotificationTargetARN"); got != drainTarget {
				t.Errorf("%s: hook decommission created with NotificationTargetARN %q (RoleARN %q, NotificationMetadata %q), want %s as on cassandra: its consumer never hears of a termination in this group",
					form.Get("AutoScalingGroupName"), got, form.Get(p+".RoleARN"), form.Get(p+".NotificationMetadata"), drainTarget)
			}
		}
		if !found {
			t.Errorf("%s: created without the hook decommission", form.Get("AutoScalingGroupName"))
		}
	}
	if created == 0 {
		t.Fatal("no per-zone group was created")
	}
}

// groupSettings answers DescribeAutoScalingGroups with extra, AWS-shaped
// elements in the description of group (settings the emulator does not
// keep), and records every CreateAutoScalingGroup request.
type groupSettings struct {
	group, extra string
	mu           sync.Mutex
	creates      []url.Values
}

func (g *groupSettings) RoundTrip(r *http.Request) (*http.Response, error) {
	form, err := readForm(r)
	if err != nil {
		return nil, err
	}
	action := form.Get("Action")
	if action == "CreateAutoScalingGroup" {
		g.mu.Lock()
		g.creates = append(g.creates, form)
		g.mu.Unlock()
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || action != "DescribeAutoScalingGroups" {
		return resp, err
	}
	name := "<AutoScalingGroupName>" + g.group + "</AutoScalingGroupName>"
	return rewriteBody(resp, func(out []byte) []byte { return bytes.ReplaceAll(out, []byte(name), []byte(name+g.extra)) })
}

// TestReview14aZoneGroupsDropTheGroupsSafeguards (review 14a): CreateZoneGroup
// copies from the split group its launch template, health check, cooldown,
// termination policies, scale-in protection setting and so on, but not two
// settings whose whole purpose is to keep instances and their data:
//
//   - InstanceLifecyclePolicy (API_CreateAutoScalingGroup: "Configure
//     retention triggers to specify when instances should move to a Retained
//     state instead of automatic termination"; API_RetentionTriggers,
//     TerminateHookAbandon: "Specifies the action when a termination
//     lifecycle hook is abandoned due to failure, timeout, or explicit
//     abandonment ... Set to retain to move instances to a retained state").
//     On G, an instance whose termination hook is abandoned (its consumer
//     failed, or timed out with DefaultResult ABANDON) is retained, data and
//     all; once moved to G-z it is terminated.
//   - DeletionProtection (API_CreateAutoScalingGroup: "When deletion
//     protection is enabled, users cannot delete the Auto Scaling group
//     according to the specified protection level"; default none). G could
//     not be force-deleted (which terminates its instances); G-z, holding
//     the same instances, can.
//
// DescribeAutoScalingGroups answers both (API_AutoScalingGroup), so the
// split can copy them; the zone groups are created without either.
func TestReview14aZoneGroupsDropTheGroupsSafeguards(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	gs := &groupSettings{group: "cassandra", extra: "<DeletionProtection>prevent-all-deletion</DeletionProtection>" +
		"<InstanceLifecyclePolicy><RetentionTriggers><TerminateHookAbandon>retain</TerminateHookAbandon></RetentionTriggers></InstanceLifecyclePolicy>"}
	cloud := w.client(t, &http.Client{Transport: gs})
	// The group as the SDK reads it from an AWS-shaped answer: with both.
	raw := w.rawAutoscaling(&http.Client{Transport: gs})
	out, err := raw.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"cassandra"}})
	if err != nil || len(out.AutoScalingGroups) != 1 || out.AutoScalingGroups[0].DeletionProtection != "prevent-all-deletion" ||
		out.AutoScalingGroups[0].InstanceLifecyclePolicy == nil || out.AutoScalingGroups[0].InstanceLifecyclePolicy.RetentionTriggers == nil ||
		out.AutoScalingGroups[0].InstanceLifecyclePolicy.RetentionTriggers.TerminateHookAbandon != "retain" {
		t.Fatalf("setup: DescribeAutoScalingGroups of cassandra: %+v, %v", out, err)
	}
	s := w.splitter(cloud, "run")
	w.untilABatchLeaves(ctx, t, s)
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if len(gs.creates) == 0 {
		t.Fatal("no per-zone group was created")
	}
	for _, form := range gs.creates {
		zg := form.Get("AutoScalingGroupName")
		if got := form.Get("InstanceLifecyclePolicy.RetentionTriggers.TerminateHookAbandon"); got != "retain" {
			t.Errorf("%s created with InstanceLifecyclePolicy TerminateHookAbandon %q, want retain as on cassandra: an instance whose termination hook is abandoned is terminated there instead of retained", zg, got)
		}
		if got := form.Get("DeletionProtection"); got != "prevent-all-deletion" {
			t.Errorf("%s created with DeletionProtection %q, want prevent-all-deletion as on cassandra: the group holding cassandra's instances can be force-deleted, its instances terminated", zg, got)
		}
	}
}

// TestReview14aZoneDroppedWithItsBatchInFlight (review 14a, against
// 45dda74): the split describes only the per-zone groups of the zones the
// split group lists now (snapshot: names from snap.zones). An operator who
// drops a zone from the group (the case 45dda74 handles for instances still
// in the group: "dropped while AZRebalance was suspended", user guide
// suspend-resume-considerations) while that zone's batch is detaching
// leaves the batch's zone group out of every later snapshot: the batch is
// attached to it (AttachInstances names the group directly), but the split
// never sees it there. Each pass takes the attached instances for loose,
// attaches them again (refused: "already part of", taken for success),
// and, for an instance that was protected from scale-in before the split,
// waits for ever to protect it "once InService" without ever protecting
// it. The instance stays in its zone group without the protection it had,
// and the split never finishes.
func TestReview14aZoneDroppedWithItsBatchInFlight(t *testing.T) {
	ctx, w, s, mi := newLeavingWorld(t)
	var prot string // protected before the split, in the batch
	for _, id := range w.prot {
		if i, _ := w.emu.Instance(id); i.Zone == mi.Zone {
			prot = id
		}
	}
	if prot == "" {
		t.Fatalf("setup: no instance protected before the split in zone %s", mi.Zone)
	}
	w.dropZone(ctx, t, mi.Zone)
	res, err := w.passUntilDone(ctx, t, s, "cassandra", 80)
	zg := split.ZoneGroupName("cassandra", mi.Zone)
	i, _ := w.emu.Instance(prot)
	if i.Group != zg || i.LifecycleState != "InService" || !i.ProtectedFromScaleIn {
		t.Errorf("instance %s, protected from scale-in before the split, is %s in %q, protected %t, 80 passes after its zone %s was dropped from cassandra mid-batch; want InService in %s and protected again (last pass: done %t, waiting %v, err %v)",
			prot, i.LifecycleState, i.Group, i.ProtectedFromScaleIn, mi.Zone, zg, res.Done, res.Waiting, err)
	}
	w.checkNoneLoose(t, "80 passes after the batch's zone was dropped from the group")
}
