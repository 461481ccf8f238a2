package split_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

// The fixture of the split tests: the world of incident 7 (splitWorld), the
// same with a second group on its AMI (sharedAMI), bounded runs of passes
// (run and its afters), and the transports that stand for what the network
// does to a pass.

var zones = []string{"us-east-1a", "us-east-1b", "us-east-1c"}

const (
	cluster  = "prod"
	hookName = "ballast-local-volumes"
)

func caTags(extra map[string]string) map[string]string {
	tags := map[string]string{"k8s.io/cluster-autoscaler/enabled": "true", "k8s.io/cluster-autoscaler/" + cluster: "owned"}
	for k, v := range extra {
		tags[k] = v
	}
	return tags
}

const nodeTemplateTag = "k8s.io/cluster-autoscaler/node-template/label/workload"

// splitWorld is a 3-zone group of 4+1+1 instances (incident 7), min 3 max 10,
// two instances protected from scale-in, a termination hook.
type splitWorld struct {
	emu   *awstest.Server
	clock *clocktesting.FakeClock
	cloud *asg.Client
	ids   map[string][]string // by zone
	prot  []string            // protected before the split
	f     *awstest.SplitWorld
}

func newSplitWorld(t testing.TB, opts ...awstest.GroupOption) *splitWorld {
	t.Helper()
	f := awstest.NewSplitWorld(t, zones, hookName, caTags(map[string]string{nodeTemplateTag: "cassandra", "team": "db"}), opts...)
	return &splitWorld{emu: f.Emu, clock: f.Clock, cloud: f.Cloud, ids: f.IDs, prot: f.Protected, f: f}
}

// newEmptyWorld is an emulator without groups, and its client: the test
// makes its own groups.
func newEmptyWorld(t testing.TB) *splitWorld {
	t.Helper()
	w := &splitWorld{clock: clocktesting.NewFakeClock(time.Now())}
	w.emu = awstest.NewServer(w.clock)
	t.Cleanup(w.emu.Close)
	w.cloud = w.client(t, nil)
	return w
}

func (w *splitWorld) client(t testing.TB, hc *http.Client) *asg.Client {
	t.Helper()
	return w.emu.NewClient(t, hc)
}

func (w *splitWorld) splitter(cloud split.Cloud, owner string) *split.Splitter {
	return w.splitterOf(cloud, cluster, owner)
}

// splitterOf is a splitter of the groups of another cluster.
func (w *splitWorld) splitterOf(cloud split.Cloud, cluster, owner string) *split.Splitter {
	return split.New(cloud, w.clock, split.Options{Selector: asg.AutoDiscovery(cluster), Owner: owner})
}

// run is a bounded run of passes: at most max passes of s over group, the
// clock moving on by every after each. after, when not nil, sees each pass
// and stops the run (before the clock moves) by returning true. It returns
// the last pass's result and error.
func (w *splitWorld) run(ctx context.Context, s *split.Splitter, group string, max int, every time.Duration, after func(pass int, res split.Result, err error) bool) (split.Result, error) {
	var res split.Result
	var err error
	for pass := range max {
		res, err = s.Pass(ctx, group)
		if after != nil && after(pass, res, err) {
			break
		}
		w.clock.Step(every)
	}
	return res, err
}

// passes runs n passes of the split of "cassandra", the clock moving on by a
// lock settle before each; it logs each pass's error and returns the last.
func (w *splitWorld) passes(ctx context.Context, t *testing.T, s *split.Splitter, n int) error {
	t.Helper()
	var last error
	for range n {
		w.clock.Step(split.DefaultLockSettle)
		_, last = s.Pass(ctx, "cassandra")
		if last != nil {
			t.Logf("pass: %v", last)
		}
	}
	return last
}

// untilABatchLeaves runs passes, a lock settle apart, until an instance of
// the split group is detaching or detached and running, and returns it.
func (w *splitWorld) untilABatchLeaves(ctx context.Context, t *testing.T, s *split.Splitter) string {
	t.Helper()
	moving := ""
	w.run(ctx, s, "cassandra", 30, split.DefaultLockSettle, func(pass int, res split.Result, err error) bool {
		logged(t)(pass, res, err)
		for _, i := range w.emu.AllInstances() {
			if i.EC2State == "running" && (i.LifecycleState == "Detaching" || i.Group == "") {
				moving = i.ID
			}
		}
		return moving != ""
	})
	if moving == "" {
		t.Fatal("no batch ever left the group")
	}
	return moving
}

// logged is the after of a run that logs each pass's error and goes on.
func logged(t *testing.T) func(int, split.Result, error) bool {
	return func(pass int, _ split.Result, err error) bool {
		if err != nil {
			t.Logf("pass %d: %v", pass, err)
		}
		return false
	}
}

// untilDone logs each pass's error and stops the run once the split is done.
func untilDone(t *testing.T) func(int, split.Result, error) bool {
	return func(pass int, res split.Result, err error) bool {
		logged(t)(pass, res, err)
		return res.Done
	}
}

// noneLoose logs each pass's error and stops the test at the first pass
// after which an instance runs in no group (checkNoneLoose).
func (w *splitWorld) noneLoose(t *testing.T) func(int, split.Result, error) bool {
	return func(pass int, res split.Result, err error) bool {
		logged(t)(pass, res, err)
		w.checkNoneLoose(t, fmt.Sprintf("after pass %d", pass))
		if t.Failed() {
			t.FailNow()
		}
		return false
	}
}

// finish runs passes of the split of group, the lock's settle time apart,
// until it is done or a pass fails, and returns the steps of all.
func (w *splitWorld) finish(ctx context.Context, s *split.Splitter, group string) ([]split.Step, error) {
	var all []split.Step
	res, err := w.run(ctx, s, group, 200, split.DefaultLockSettle, func(_ int, res split.Result, err error) bool {
		all = append(all, res.Steps...)
		return err != nil || res.Done
	})
	if err != nil || res.Done {
		return all, err
	}
	return all, fmt.Errorf("the split of %s did not finish in 200 passes", group)
}

// passUntilDone runs passes of s over group, a lock settle apart, until the
// split is done or max passes ran; it logs each pass's error and returns the
// last result and error.
func (w *splitWorld) passUntilDone(ctx context.Context, t *testing.T, s *split.Splitter, group string, max int) (split.Result, error) {
	t.Helper()
	return w.run(ctx, s, group, max, split.DefaultLockSettle, untilDone(t))
}

func (w *splitWorld) all() []string { return w.f.All() }

// newLeavingWorld is a splitWorld whose split of cassandra, by a splitter
// "run" of its client, has run until a batch leaves the group
// (untilABatchLeaves): the test's context, the world, the splitter and the
// instance on its way, as it was then.
func newLeavingWorld(t *testing.T) (context.Context, *splitWorld, *split.Splitter, awstest.Instance) {
	t.Helper()
	ctx := context.Background()
	w := newSplitWorld(t)
	s := w.splitter(w.cloud, "run")
	mi, _ := w.emu.Instance(w.untilABatchLeaves(ctx, t, s))
	return ctx, w, s, mi
}

// rawAutoscaling is an SDK Auto Scaling client of the emulator, for what
// asg.Client does not do (an operator's own calls) or to read an answer as
// the SDK does; its requests go through hc when not nil.
func (w *splitWorld) rawAutoscaling(hc *http.Client) *autoscaling.Client {
	o := autoscaling.Options{Region: "us-east-1", BaseEndpoint: awssdk.String(w.emu.URL),
		Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")}
	if hc != nil {
		o.HTTPClient = hc
	}
	return autoscaling.New(o)
}

// dropZone has the operator drop zone from cassandra's zones
// (UpdateAutoScalingGroup with the others).
func (w *splitWorld) dropZone(ctx context.Context, t *testing.T, zone string) {
	t.Helper()
	var keep []string
	for _, z := range zones {
		if z != zone {
			keep = append(keep, z)
		}
	}
	if _, err := w.rawAutoscaling(nil).UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: awssdk.String("cassandra"),
		AvailabilityZones: keep}); err != nil {
		t.Fatal(err)
	}
}

// checkNothingLost fails unless exactly the seeded instances exist, all
// running, each in its zone's group.
func (w *splitWorld) checkNothingLost(t *testing.T) {
	t.Helper()
	w.f.CheckNothingLost(t, func(zone string) string { return split.ZoneGroupName("cassandra", zone) })
}

// checkNoneLoose fails for every running instance that is in no group: the
// split group and its per-zone groups are the only places it may be (a
// Detaching instance is still in its group).
func (w *splitWorld) checkNoneLoose(t *testing.T, when string) {
	t.Helper()
	for _, i := range w.emu.AllInstances() {
		if i.EC2State == "running" && i.Group == "" {
			t.Errorf("%s: instance %s runs in no group (%s): lost to cluster-autoscaler, with its data", when, i.ID, i.LifecycleState)
		}
	}
}

// recordOfAnother makes a group named name with one instance in the first
// zone, and records that instance on cassandra (a per-instance record,
// split-state/<id>) as though the split had moved it: bad input, a tag
// copied or an instance attached elsewhere by hand. It returns the instance.
func (w *splitWorld) recordOfAnother(ctx context.Context, t *testing.T, name string) string {
	t.Helper()
	other := w.emu.CreateGroup(awstest.GroupSpec{Name: name, Zones: zones[:1], MinSize: 1, MaxSize: 1, InstanceType: "m5.large",
		Instances: map[string]int{zones[0]: 1}})
	stranger := other[zones[0]][0]
	if err := w.cloud.SetGroupTags(ctx, "cassandra", map[string]string{split.TagRecordPrefix + stranger: zones[0]}); err != nil {
		t.Fatal(err)
	}
	return stranger
}

// sharedAMI is two splits on one AMI (reviews 11c to 11e): the splitWorld,
// its cassandra launched from ami, and a second group, kafka, over the same
// zones with 3+1+1 instances of the same AMI, in this cluster unless an
// option says otherwise.
type sharedAMI struct {
	*splitWorld
	ami          string
	kafka        []string // kafka's instances
	logged       map[string]bool
	deregistered bool
}

// kafkaTargetGroup keeps kafka's detached instances Detaching for the
// deregistration delay.
var kafkaTargetGroup = awstest.WithTargetGroups("arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/kafka/0123456789abcdef")

// inCluster puts kafka in another cluster's discovery (and out of this one's).
func inCluster(name string) awstest.GroupOption {
	return func(g *awstest.GroupSpec) {
		g.Tags = map[string]string{"k8s.io/cluster-autoscaler/enabled": "true", "k8s.io/cluster-autoscaler/" + name: "owned"}
	}
}

func newSharedAMI(t *testing.T, kafka ...awstest.GroupOption) *sharedAMI {
	t.Helper()
	const ami = "ami-shared-node"
	w := &sharedAMI{splitWorld: newSplitWorld(t, awstest.WithImage(ami)), ami: ami, logged: map[string]bool{}}
	spec := awstest.GroupSpec{Name: "kafka", Zones: zones, MinSize: 0, MaxSize: 10, InstanceType: "i3.xlarge",
		Tags: caTags(nil), ImageID: ami, Instances: map[string]int{zones[0]: 3, zones[1]: 1, zones[2]: 1}}
	for _, o := range kafka {
		o(&spec)
	}
	ids := w.emu.CreateGroup(spec)
	for _, z := range zones {
		w.kafka = append(w.kafka, ids[z]...)
	}
	return w
}

// moving reports an instance of kafka's that has left (or is leaving) its
// group and is not yet in a group of its own zone; "" if none.
func (w *sharedAMI) moving() string {
	for _, id := range w.kafka {
		i, _ := w.emu.Instance(id)
		if i.EC2State == "running" && (i.LifecycleState == "Detaching" || i.Group == "") {
			return fmt.Sprintf("%s (%s, group %q)", id, i.LifecycleState, i.Group)
		}
	}
	return ""
}

// pipelineDeregisters stands for the image pipeline cleaning up the AMI: the
// first time it is called while a kafka instance is on its way and the AMI
// is not protected, it deregisters the AMI (EC2 lets it) and returns the
// instance on its way; otherwise "".
func (w *sharedAMI) pipelineDeregisters() string {
	m := w.moving()
	if m == "" || w.deregistered || w.emu.ImageProtected(w.ami) {
		return ""
	}
	if err := w.emu.DeregisterImage(w.ami); err != nil {
		return ""
	}
	w.deregistered = true
	return m
}

// splitOf is one splitter's split of one group.
type splitOf struct {
	s     *split.Splitter
	group string
}

var requestID = regexp.MustCompile(`RequestID: [^,]*`)

// passEach makes one pass of each split in turn, logging each distinct
// error (request IDs aside) once.
func (w *sharedAMI) passEach(ctx context.Context, t *testing.T, pass int, splits ...splitOf) {
	for _, p := range splits {
		if _, err := p.s.Pass(ctx, p.group); err != nil && !w.logged[requestID.ReplaceAllString(err.Error(), "")] {
			w.logged[requestID.ReplaceAllString(err.Error(), "")] = true
			t.Logf("pass %d of %s: %v", pass, p.group, err)
		}
	}
}

// passesWithPipeline makes n passes of each split (passEach), the lock's
// settle time apart; after each it calls each, if not nil, and lets the image
// pipeline deregister the AMI (pipelineDeregisters). It returns the pass
// after which the pipeline did, and the kafka instance then on its way; ""
// if it never did.
func (w *sharedAMI) passesWithPipeline(ctx context.Context, t *testing.T, n int, each func(pass int), splits ...splitOf) (int, string) {
	at, moving := 0, ""
	for pass := range n {
		w.passEach(ctx, t, pass, splits...)
		if each != nil {
			each(pass)
		}
		if m := w.pipelineDeregisters(); m != "" {
			at, moving = pass, m
		}
		w.clock.Step(split.DefaultLockSettle)
	}
	return at, moving
}

// crashAfter lets n requests reach AWS and then dies: the nth request is
// made but its answer is lost, and nothing after it leaves.
type crashAfter struct {
	mu      sync.Mutex
	n, sent int
	cancel  context.CancelFunc
}

var errCrash = errors.New("crashed")

func (c *crashAfter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.sent >= c.n {
		c.mu.Unlock()
		return nil, errCrash
	}
	c.sent++
	last := c.sent == c.n
	c.mu.Unlock()
	resp, err := http.DefaultTransport.RoundTrip(r)
	if last {
		c.cancel()
		if resp != nil {
			resp.Body.Close()
		}
		return nil, errCrash
	}
	return resp, err
}

// lockTripper stands for what the SDK and the network do to the lock's
// writes: slow ones (the retryer's backoff under throttling lands a claim
// late) and a rival splitter's claim landing in the middle of a pass.
type lockTripper struct {
	mu     sync.Mutex
	before func(action string, form url.Values)
}

func (l *lockTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	form, err := readForm(r)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	before := l.before
	l.mu.Unlock()
	if before != nil {
		before(form.Get("Action"), form)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// tripped is a splitter whose requests go through a new lockTripper.
func (w *splitWorld) tripped(t *testing.T, owner string) (*split.Splitter, *lockTripper) {
	lt := &lockTripper{}
	return w.splitter(w.client(t, &http.Client{Transport: lt}), owner), lt
}

// beforeFirst runs fn once, before the first request to AWS that match
// takes (with the request's action and form).
func (l *lockTripper) beforeFirst(match func(action string, form url.Values) bool, fn func()) {
	var once sync.Once
	l.mu.Lock()
	defer l.mu.Unlock()
	l.before = func(action string, form url.Values) {
		if match(action, form) {
			once.Do(fn)
		}
	}
}

// attachTo matches AttachInstances to group.
func attachTo(group string) func(string, url.Values) bool {
	return func(action string, form url.Values) bool {
		return action == "AttachInstances" && form.Get("AutoScalingGroupName") == group
	}
}

// refuseAttach makes AWS refuse every AttachInstances to group with a
// ValidationError, as it does an instance it will not take.
func (w *splitWorld) refuseAttach(group string) {
	w.emu.Inject(awstest.Fault{Service: "autoscaling", Action: "AttachInstances", Group: group, Code: "ValidationError", Status: http.StatusBadRequest, Times: 1000})
}

// readForm reads the form of an AWS query request and puts its body back
// for the request to be sent.
func readForm(r *http.Request) (url.Values, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	return form, nil
}

// rewriteBody replaces the body of resp by edit of it.
func rewriteBody(resp *http.Response, edit func([]byte) []byte) (*http.Response, error) {
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	out = edit(out)
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	return resp, nil
}
