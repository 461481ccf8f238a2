// Package awstest emulates the parts of the Amazon EC2 Auto Scaling and EC2
// query APIs that az-balancer uses, over HTTP on loopback, so that tests run
// the real aws-sdk-go-v2 clients (serialization, signing, retries, paging)
// against real state: groups, instances, suspended processes, lifecycle hooks
// and their pending actions, and AZRebalance.
//
// What the emulator models, from the Amazon EC2 Auto Scaling User Guide:
//
//   - Rebalancing ("Rebalance Availability Zones" in as-instance-termination):
//     when the capacity of a group is unevenly spread over its zones, Auto
//     Scaling launches instances in the zone with the fewest instances and
//     terminates instances elsewhere; it launches before it terminates, so a
//     group may exceed its maximum size by up to 10% while rebalancing.
//     Suspending AZRebalance stops it; so does suspending Launch, while a
//     suspended Terminate lets it launch without terminating (as-suspend-resume-processes).
//   - Scale-in protection (ec2-auto-scaling-instance-protection) "controls
//     whether the Auto Scaling group can terminate a particular instance when
//     scaling in". The guide lists what it does not stop (manual termination,
//     health-check replacement, Spot interruptions) and says nothing about
//     rebalancing either way. The emulator takes the worst case, which is what
//     incident 7 looked like: protection is honoured by scale-in (desired
//     capacity lowered) and ignored by AZRebalance, which only prefers
//     unprotected instances. Ballast therefore never relies on protection
//     alone: it suspends AZRebalance and holds terminations with a hook.
//   - Termination lifecycle hooks apply to every termination the group makes
//     (scale-in, rebalancing, TerminateInstanceInAutoScalingGroup): the instance
//     waits in Terminating:Wait until every hook's action is completed, or its
//     heartbeat timeout (30-7200s, default 3600s) passes without a heartbeat.
//     RecordLifecycleActionHeartbeat restarts the timeout, but never beyond
//     the global timeout: 48 hours or 100 times the heartbeat timeout, whichever
//     is smaller. For termination hooks, CONTINUE and ABANDON both terminate.
//
// Faults (throttling, 5xx, one-shot errors per action) are injected with
// Inject; every request is recorded in the call log.
package awstest

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"k8s.io/utils/clock"

	"github.com/ballast-k8s/ballast/internal/asg"
)

const (
	// AutoScalingNamespace and EC2Namespace are the XML namespaces of the responses.
	AutoScalingNamespace = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
	EC2Namespace         = "http://ec2.amazonaws.com/doc/2016-11-15/"

	autoScalingVersion = "2011-01-01"
	ec2Version         = "2016-11-15"

	// Lifecycle states of group instances.
	InService         = "InService"
	TerminatingWait   = "Terminating:Wait"
	transitionTerm    = "autoscaling:EC2_INSTANCE_TERMINATING"
	defaultHeartbeat  = 3600
	maxGlobalTimeout  = 48 * 3600
	maxProtectionIDs  = 50
	maxRecordsDefault = 50
	maxRecordsLimit   = 100
)

// Call is one request as the emulator received it.
type Call struct {
	Service string // "autoscaling" or "ec2"
	Action  string
	Params  url.Values
	// Code is the error code returned, "" on success.
	Code string
}

// Mutating reports whether the action changes state. Describe* calls do not.
func (c Call) Mutating() bool { return !strings.HasPrefix(c.Action, "Describe") }

// Fault makes requests fail. Action "" matches every action; Service "" both services.
type Fault struct {
	Service, Action string
	// Code and Status of the error, e.g. Throttling/400 or InternalFailure/500.
	Code   string
	Status int
	// Times is how many matching requests fail; 0 means once.
	Times int
	// Group, if set, matches only requests whose AutoScalingGroupName it is.
	Group string
}

// Throttling fails the next n requests as AWS throttles: HTTP 400 Throttling
// on Auto Scaling, HTTP 503 RequestLimitExceeded on EC2.
func Throttling(n int) []Fault {
	return []Fault{
		{Service: "autoscaling", Code: "Throttling", Status: http.StatusBadRequest, Times: n},
		{Service: "ec2", Code: "RequestLimitExceeded", Status: http.StatusServiceUnavailable, Times: n},
	}
}

// ServerErrors fails the next n requests of each service with HTTP 500.
func ServerErrors(n int) []Fault {
	return []Fault{
		{Service: "autoscaling", Code: "InternalFailure", Status: http.StatusInternalServerError, Times: n},
		{Service: "ec2", Code: "InternalError", Status: http.StatusInternalServerError, Times: n},
	}
}

// GroupSpec seeds a group.
type GroupSpec struct {
	Name             string
	Zones            []string
	MinSize, MaxSize int32
	Tags             map[string]string
	// InstanceType is what the group launches; LaunchTemplateID, if set,
	// names a template added with AddLaunchTemplate instead.
	InstanceType     string
	LaunchTemplateID string
	// OverrideTypes makes it a mixed instances policy group.
	OverrideTypes []string
	// Instances is the number of InService instances to start with per zone.
	Instances map[string]int
	// NewInstancesProtectedFromScaleIn protects every instance it launches.
	NewInstancesProtectedFromScaleIn bool
	// Subnets is the VPCZoneIdentifier, subnets added with AddSubnet; empty
	// means the group names its zones only.
	Subnets []string
	// TargetGroupARNs are the load balancer target groups; a detached
	// instance is deregistered from them first (split.go).
	TargetGroupARNs []string
	// ImageID is the AMI of the group's launch template (images.go);
	// empty means "ami-<group name>".
	ImageID string
	// DeletionProtection (none, prevent-force-deletion,
	// prevent-all-deletion) and TerminateHookAbandon (the retention trigger
	// of the InstanceLifecyclePolicy: retain or terminate) are stored and
	// answered (safeguards.go); the emulator deletes no group and retains
	// no instance.
	DeletionProtection, TerminateHookAbandon string
}

// Instance is an instance as the emulator holds it.
type Instance struct {
	ID, Group, Zone, InstanceType string
	ImageID                       string // the AMI it was launched from (images.go)
	LifecycleState                string // InService, Terminating:Wait, Terminated, Detaching, Detached
	ProtectedFromScaleIn          bool
	EC2State                      string // running, terminated
	seq                           int
	actions                       map[string]*action // pending lifecycle actions by hook
	detachedAt                    time.Time          // when a Detaching instance leaves its group (split.go)
	terminatedAt                  time.Time          // EC2 forgets it ForgetAfter later (images.go)
	inServiceAt                   time.Time          // when an attached, Pending instance is InService (split.go)
}

type action struct{ deadline, globalDeadline time.Time }

// Hook is a lifecycle hook.
type Hook struct {
	Name, Transition, DefaultResult string
	HeartbeatTimeout, GlobalTimeout int32
	// NotificationTargetARN, RoleARN and NotificationMetadata are stored
	// and answered as given (API_PutLifecycleHook, API_LifecycleHook); the
	// emulator sends no notification.
	NotificationTargetARN, RoleARN, NotificationMetadata string
}

type group struct {
	GroupSpec
	desired   int32
	instances []string // ids, launch order
	suspended []string
	hooks     []Hook
	created   time.Time
}

// LaunchTemplate is a launch template with one version.
type LaunchTemplate struct{ ID, Name, InstanceType, ImageID string }

// InstanceType is a row of the instance type catalog.
type InstanceType struct {
	Name          string
	VCPU          int32
	MemoryMiB     int64
	Architecture  string
	NvidiaGPUs    int32
	LocalNVMeDisk bool
}

// Activity is a scaling activity.
type Activity struct {
	ID, Group, Description, Cause, Status string
	Start                                 time.Time
}

// DefaultInstanceTypes is the catalog a new Server knows.
var DefaultInstanceTypes = []InstanceType{
	{Name: "t3.medium", VCPU: 2, MemoryMiB: 4096, Architecture: "x86_64"},
	{Name: "m5.large", VCPU: 2, MemoryMiB: 8192, Architecture: "x86_64"},
	{Name: "m5.xlarge", VCPU: 4, MemoryMiB: 16384, Architecture: "x86_64"},
	{Name: "m5.2xlarge", VCPU: 8, MemoryMiB: 32768, Architecture: "x86_64"},
	{Name: "c5.xlarge", VCPU: 4, MemoryMiB: 8192, Architecture: "x86_64"},
	{Name: "r5.xlarge", VCPU: 4, MemoryMiB: 32768, Architecture: "x86_64"},
	{Name: "i3.xlarge", VCPU: 4, MemoryMiB: 31232, Architecture: "x86_64", LocalNVMeDisk: true},
	{Name: "i3en.2xlarge", VCPU: 8, MemoryMiB: 65536, Architecture: "x86_64", LocalNVMeDisk: true},
	{Name: "m6g.large", VCPU: 2, MemoryMiB: 8192, Architecture: "arm64"},
	{Name: "p3.2xlarge", VCPU: 8, MemoryMiB: 62464, Architecture: "x86_64", NvidiaGPUs: 1},
}

// Server is the emulated endpoint. Point the SDK's BaseEndpoint at URL.
type Server struct {
	*httptest.Server
	clock clock.PassiveClock

	mu         sync.Mutex
	groups     map[string]*group
	instances  map[string]*Instance
	types      map[string]InstanceType
	templates  map[string]LaunchTemplate
	activities []Activity
	calls      []Call
	faults     []*Fault
	subnets    map[string]string // subnet id -> zone (AddSubnet)
	seq        int
	short      map[string]bool   // zones that refuse launches (RefuseLaunches)
	reported   map[string]bool   // group and zone whose refused launch is on record
	images     map[string]*image // AMIs by id (images.go)
	forget     time.Duration     // how long terminated instances stay visible (images.go)
	detach     detachDelays      // how long instances stay Detaching (split.go)

	nodegroups map[string]Nodegroup // EKS managed node groups by cluster/name (eks.go)
}

// NewServer starts an emulator on loopback. Close it when done.
func NewServer(c clock.PassiveClock) *Server {
	if c == nil {
		c = clock.RealClock{}
	}
	s := &Server{clock: c, groups: map[string]*group{}, instances: map[string]*Instance{}, types: map[string]InstanceType{}, templates: map[string]LaunchTemplate{},
		detach: defaultDetachDelays}
	for _, t := range DefaultInstanceTypes {
		s.types[t.Name] = t
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serveSocket))
	return s
}

// serveSocket is the loopback listener's handler: it answers no faster than
// AWS would. net/http may still be finishing the request (its final read of
// the body) after the server has all of it, and smithy-go closes the body as
// soon as the response arrives, which makes the transport drop the
// connection under the response being decoded. The in-process transport
// (inprocess.go) has no connection to drop and calls serve directly.
func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	time.Sleep(time.Millisecond)
	s.serve(w, r)
}

// Inject queues faults; they apply in order to matching requests.
func (s *Server) Inject(faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range faults {
		if f.Times == 0 {
			f.Times = 1
		}
		s.faults = append(s.faults, &f)
	}
}

// Calls returns the call log.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Counts returns the number of calls per action.
func (s *Server) Counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, c := range s.calls {
		out[c.Action]++
	}
	return out
}

// MutatingCalls returns the calls that change state, failed ones included.
func (s *Server) MutatingCalls() []Call {
	var out []Call
	for _, c := range s.Calls() {
		if c.Mutating() {
			out = append(out, c)
		}
	}
	return out
}

// Reset clears the call log and the pending faults; the state stays.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls, s.faults = nil, nil
}

// AddInstanceType adds or replaces a catalog entry.
func (s *Server) AddInstanceType(t InstanceType) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.types[t.Name] = t
}

// AddLaunchTemplate registers a launch template.
func (s *Server) AddLaunchTemplate(t LaunchTemplate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.templates[t.ID] = t
}

// CreateGroup seeds a group and launches its instances; it returns their ids by zone.
func (s *Server) CreateGroup(spec GroupSpec) map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := &group{GroupSpec: spec, created: s.clock.Now()}
	g.Tags = maps(spec.Tags)
	if g.LaunchTemplateID == "" && g.InstanceType != "" {
		// Every group gets a launch template, as groups made today do.
		g.LaunchTemplateID = "lt-" + spec.Name
		s.templates[g.LaunchTemplateID] = LaunchTemplate{ID: g.LaunchTemplateID, Name: spec.Name, InstanceType: g.InstanceType, ImageID: spec.ImageID}
	}
	s.groups[spec.Name] = g
	out := map[string][]string{}
	for _, z := range spec.Zones {
		for range spec.Instances[z] {
			out[z] = append(out[z], s.launch(g, z, "seeded").ID)
			g.desired++
		}
	}
	return out
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Instance returns a copy of an instance.
func (s *Server) Instance(id string) (Instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
	i, ok := s.instances[id]
	if !ok {
		return Instance{}, false
	}
	cp := *i
	cp.actions = nil
	return cp, true
}

// GroupInstances returns copies of the instances still in a group.
func (s *Server) GroupInstances(name string) []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
	var out []Instance
	if g := s.groups[name]; g != nil {
		for _, id := range g.instances {
			cp := *s.instances[id]
			cp.actions = nil
			out = append(out, cp)
		}
	}
	return out
}

// Suspended returns the suspended processes of a group.
func (s *Server) Suspended(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.groups[name]; g != nil {
		return slices.Clone(g.suspended)
	}
	return nil
}

// Hooks returns the lifecycle hooks of a group.
func (s *Server) Hooks(name string) []Hook {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.groups[name]; g != nil {
		return slices.Clone(g.hooks)
	}
	return nil
}

// Activities returns the scaling activities, oldest first.
func (s *Server) Activities() []Activity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.activities)
}

// Expire runs the lifecycle timeouts up to the clock's now. Requests do it too.
func (s *Server) Expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
}

// AZRebalance runs the AZRebalance process once over every group, as AWS does
// when a zone recovers: in each group whose AZRebalance (and Launch) process
// is not suspended and whose InService instances differ by more than one
// between zones, launch one instance in the least crowded zone, then terminate
// one in the most crowded zone, until balanced. It returns the ids whose
// termination it started (some may be held in Terminating:Wait by a hook).
func (s *Server) AZRebalance() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
	var out []string
	for _, name := range s.groupNames() {
		g := s.groups[name]
		if len(g.Zones) < 2 || slices.Contains(g.suspended, "AZRebalance") || slices.Contains(g.suspended, "Launch") {
			continue
		}
		for {
			byZone := s.inService(g)
			most := g.Zones[0]
			for _, z := range g.Zones {
				if len(byZone[z]) > len(byZone[most]) {
					most = z
				}
			}
			// Rebalancing launches first: a zone short of capacity is no target.
			least := s.leastCrowded(g, byZone)
			if least == "" || len(byZone[most])-len(byZone[least]) <= 1 {
				break
			}
			s.launch(g, least, "rebalancing Availability Zones")
			if slices.Contains(g.suspended, "Terminate") {
				break // launches without terminating, AWS lets the group exceed its max by 10%
			}
			victim := byZone[most][0]
			for _, i := range byZone[most] {
				if !i.ProtectedFromScaleIn { // a preference of the termination policy, not a guarantee
					victim = i
					break
				}
			}
			s.terminate(g, victim, "an instance was taken out of service in response to an Availability Zone rebalancing")
			out = append(out, victim.ID)
		}
	}
	return out
}

func (s *Server) groupNames() []string {
	names := make([]string, 0, len(s.groups))
	for n := range s.groups {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// inService returns the InService instances by zone, oldest first.
func (s *Server) inService(g *group) map[string][]*Instance {
	out := map[string][]*Instance{}
	for _, id := range g.instances {
		if i := s.instances[id]; i.LifecycleState == InService {
			out[i.Zone] = append(out[i.Zone], i)
		}
	}
	return out
}

func (s *Server) launch(g *group, zone, cause string) *Instance {
	s.seq++
	t := g.InstanceType
	if lt, ok := s.templates[g.LaunchTemplateID]; ok && t == "" {
		t = lt.InstanceType
	}
	if t == "" && len(g.OverrideTypes) > 0 {
		t = g.OverrideTypes[0]
	}
	i := &Instance{
		ID: fmt.Sprintf("i-%017x", s.seq), Group: g.Name, Zone: zone, InstanceType: t, ImageID: s.launchImage(g),
		LifecycleState: InService, EC2State: "running", seq: s.seq, ProtectedFromScaleIn: g.NewInstancesProtectedFromScaleIn,
	}
	s.instances[i.ID] = i
	g.instances = append(g.instances, i.ID)
	s.activity(g, "Launching a new EC2 instance: "+i.ID, cause)
	return i
}

// terminate starts a termination: held by the group's termination hooks, or done.
func (s *Server) terminate(g *group, i *Instance, cause string) {
	now := s.clock.Now()
	i.actions = map[string]*action{}
	for _, h := range g.hooks {
		if h.Transition == transitionTerm {
			hb := time.Duration(h.HeartbeatTimeout) * time.Second
			i.actions[h.Name] = &action{deadline: now.Add(hb), globalDeadline: now.Add(time.Duration(h.GlobalTimeout) * time.Second)}
		}
	}
	s.activity(g, "Terminating EC2 instance: "+i.ID, cause)
	if len(i.actions) > 0 {
		i.LifecycleState = TerminatingWait
		return
	}
	s.finishTermination(g, i)
}

func (s *Server) finishTermination(g *group, i *Instance) {
	i.LifecycleState, i.EC2State, i.actions, i.terminatedAt = "Terminated", "terminated", nil, s.clock.Now()
	g.instances = slices.DeleteFunc(g.instances, func(id string) bool { return id == i.ID })
}

// expire ends the lifecycle actions whose timeouts have passed. For termination
// hooks the default result, CONTINUE or ABANDON, terminates either way.
func (s *Server) expire() {
	now := s.clock.Now()
	for _, name := range s.groupNames() {
		g := s.groups[name]
		for _, id := range slices.Clone(g.instances) {
			i := s.instances[id]
			if i.LifecycleState == detaching && !now.Before(i.detachedAt) {
				s.finishDetach(g, i)
				continue
			}
			if i.LifecycleState == pending && !now.Before(i.inServiceAt) {
				i.LifecycleState, i.inServiceAt = InService, time.Time{}
				continue
			}
			if i.LifecycleState != TerminatingWait {
				continue
			}
			for h, a := range i.actions {
				if !now.Before(a.deadline) || !now.Before(a.globalDeadline) {
					delete(i.actions, h)
				}
			}
			if len(i.actions) == 0 {
				s.finishTermination(g, i)
			}
		}
	}
}

func (s *Server) activity(g *group, desc, cause string) {
	s.activities = append(s.activities, Activity{
		ID: fmt.Sprintf("act-%06d", len(s.activities)+1), Group: g.Name, Description: desc,
		Cause: fmt.Sprintf("At %s %s.", s.clock.Now().UTC().Format(time.RFC3339), cause), Status: "Successful", Start: s.clock.Now(),
	})
}

// apiError is an error returned to the client.
type apiError struct {
	status      int
	code, msg   string
	senderFault bool
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func validation(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "ValidationError", msg: fmt.Sprintf(format, args...), senderFault: true}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if isEKS(r) {
		s.serveEKS(w, r) // eks.go
		return
	}
	body, _ := io.ReadAll(r.Body)
	form, err := url.ParseQuery(string(body))
	if err != nil || r.Method != http.MethodPost {
		http.Error(w, "expected a form-encoded POST", http.StatusBadRequest)
		return
	}
	action, version := form.Get("Action"), form.Get("Version")
	service := map[string]string{autoScalingVersion: "autoscaling", ec2Version: "ec2"}[version]
	reqID := fmt.Sprintf("req-%d", time.Now().UnixNano())

	s.mu.Lock()
	defer s.mu.Unlock()
	call := Call{Service: service, Action: action, Params: form}
	var out any
	if f := s.fault(service, action, form.Get("AutoScalingGroupName")); f != nil {
		err = &apiError{status: f.Status, code: f.Code, msg: "injected fault", senderFault: f.Status < 500}
	} else {
		s.expire()
		switch service {
		case "autoscaling":
			out, err = s.autoScaling(action, form)
		case "ec2":
			out, err = s.ec2(action, form)
		default:
			err = &apiError{status: http.StatusBadRequest, code: "InvalidAction", msg: "unknown version " + version}
		}
	}
	if err != nil {
		ae, ok := err.(*apiError)
		if !ok {
			ae = &apiError{status: http.StatusInternalServerError, code: "InternalFailure", msg: err.Error()}
		}
		call.Code = ae.code
		s.calls = append(s.calls, call)
		writeError(w, service, reqID, ae)
		return
	}
	s.calls = append(s.calls, call)
	if service == "autoscaling" {
		out = asEnvelope{XMLName: xml.Name{Local: action + "Response"}, Xmlns: AutoScalingNamespace, Result: out, RequestID: reqID}
	}
	b, err := xml.Marshal(out)
	if err != nil {
		writeError(w, service, reqID, &apiError{status: http.StatusInternalServerError, code: "InternalFailure", msg: err.Error()})
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(xml.Header)+len(b)))
	w.Header().Set("X-Amzn-Requestid", reqID)
	_, _ = io.WriteString(w, xml.Header)
	_, _ = w.Write(b)
}

func (s *Server) fault(service, action, group string) *Fault {
	for i, f := range s.faults {
		if (f.Service == "" || f.Service == service) && (f.Action == "" || f.Action == action) && (f.Group == "" || f.Group == group) {
			if f.Times--; f.Times <= 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
			return f
		}
	}
	return nil
}

type asEnvelope struct {
	XMLName   xml.Name
	Xmlns     string `xml:"xmlns,attr"`
	Result    any
	RequestID string `xml:"ResponseMetadata>RequestId"`
}

func writeError(w http.ResponseWriter, service, reqID string, e *apiError) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(e.status)
	var esc strings.Builder
	_ = xml.EscapeText(&esc, []byte(e.msg))
	if service == "ec2" {
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`, e.code, esc.String(), reqID)
		return
	}
	typ := "Receiver"
	if e.senderFault {
		typ = "Sender"
	}
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><ErrorResponse xmlns="%s"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`, AutoScalingNamespace, typ, e.code, esc.String(), reqID)
}

// list reads a query list: prefix.1, prefix.2, ...
func list(form url.Values, prefix string) []string {
	var out []string
	for n := 1; ; n++ {
		v, ok := form[prefix+"."+strconv.Itoa(n)]
		if !ok {
			return out
		}
		out = append(out, v[0])
	}
}

func intParam(form url.Values, key string, def int) (int, error) {
	v := form.Get(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, validation("%s: %q is not an integer", key, v)
	}
	return n, nil
}

// page slices a sorted list by an opaque offset token.
func page[T any](items []T, token string, max int) ([]T, string, error) {
	start := 0
	if token != "" {
		n, err := strconv.Atoi(token)
		if err != nil || n < 0 || n > len(items) {
			return nil, "", validation("invalid NextToken %q", token)
		}
		start = n
	}
	end := min(start+max, len(items))
	next := ""
	if end < len(items) {
		next = strconv.Itoa(end)
	}
	return items[start:end], next, nil
}

// ClientOptions points internal/asg clients at the emulator, with static
// credentials and retries that do not sleep.
func (s *Server) ClientOptions() asg.Options {
	return asg.Options{
		Region: "us-east-1", Endpoint: s.URL, AccessKeyID: "AKIDEMULATOR", SecretAccessKey: "emulator",
		MaxAttempts: 4, Backoff: retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil }),
	}
}
