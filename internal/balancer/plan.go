package balancer

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/asg"
)

// Action is one write the loop would make.
type Action struct {
	Target string // "node/ip-10-0-1-2", "asg/cassandra", "configmap/kube-system/ballast-node-groups"
	Verb   string // "patch", "SuspendProcesses", ...
	Detail string
}

// Plan runs one loop as Reconcile would, against a sandbox: the Kubernetes
// objects it reads are copied into a fake clientset that records writes, and
// AWS mutations are recorded instead of made. It returns the writes, then the
// events the loop would emit.
func (b *Balancer) Plan(ctx context.Context) ([]Action, error) {
	nodes, err := b.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	pvs, err := b.kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return nil, fmt.Errorf("listing persistent volumes: %w", err)
	}
	csinodes, err := b.listCSINodes(ctx, "0")
	if err != nil {
		return nil, err
	}
	objs := make([]runtime.Object, 0, len(nodes.Items)+len(pvs.Items)+len(csinodes)+1)
	for i := range nodes.Items {
		objs = append(objs, &nodes.Items[i])
	}
	for i := range pvs.Items {
		objs = append(objs, &pvs.Items[i])
	}
	for i := range csinodes {
		objs = append(objs, &csinodes[i])
	}
	more, err := b.orphanObjects(ctx, nodes.Items, pvs.Items, csinodes)
	if err != nil {
		return nil, err
	}
	objs = append(objs, more...)
	cm, err := b.kube.CoreV1().ConfigMaps(b.opts.ConfigMapNamespace).Get(ctx, b.opts.ConfigMapName, metav1.GetOptions{})
	switch {
	case err == nil:
		objs = append(objs, cm)
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("getting ConfigMap: %w", err)
	}
	sandbox := fake.NewClientset(objs...)
	sandbox.ClearActions()
	cloud := &recordingCloud{Cloud: b.cloud}
	// FakeRecorder blocks when full: room for an event per node and volume, twice, and the group findings.
	events := record.NewFakeRecorder(2*len(objs) + 10000)
	p := New(sandbox, cloud, events, b.clock, b.opts, nil)
	p.splits.pass = planSplitPass(cloud)
	err = p.Reconcile(ctx)

	actions := append(kubeWrites(sandbox.Actions()), cloud.actions...)
	close(events.Events)
	for e := range events.Events {
		actions = append(actions, Action{Target: "event", Verb: "record", Detail: e})
	}
	return actions, err
}

func kubeWrites(actions []k8stesting.Action) []Action {
	var out []Action
	for _, a := range actions {
		var name, detail string
		switch a := a.(type) {
		case k8stesting.PatchAction:
			name, detail = a.GetName(), string(a.GetPatch())
		case k8stesting.CreateAction:
			name, detail = objectName(a.GetObject()), summarize(a.GetObject())
		case k8stesting.UpdateAction:
			name, detail = objectName(a.GetObject()), summarize(a.GetObject())
		case k8stesting.DeleteAction:
			name = a.GetName()
			if p := a.GetDeleteOptions().Preconditions; p != nil && p.UID != nil {
				detail = "precondition uid=" + string(*p.UID)
			}
		default:
			continue // reads
		}
		target := a.GetResource().Resource + "/" + name
		if ns := a.GetNamespace(); ns != "" {
			target = a.GetResource().Resource + "/" + ns + "/" + name
		}
		out = append(out, Action{Target: target, Verb: a.GetVerb(), Detail: detail})
	}
	return out
}

func objectName(o runtime.Object) string {
	if m, ok := o.(metav1.Object); ok {
		return m.GetName()
	}
	return ""
}

func summarize(o runtime.Object) string {
	if cm, ok := o.(*v1.ConfigMap); ok {
		if v, ok := cm.Data[nodegroups.DataKey]; ok {
			return fmt.Sprintf("%d lines of node groups", strings.Count(v, "\n"))
		}
	}
	return ""
}

// recordingCloud reads from AWS and records the writes instead of making them.
type recordingCloud struct {
	Cloud
	mu      sync.Mutex
	actions []Action
}

func (r *recordingCloud) record(group, verb, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.actions = append(r.actions, Action{Target: "asg/" + group, Verb: verb, Detail: fmt.Sprintf(format, args...)})
}

func (r *recordingCloud) SuspendProcesses(_ context.Context, group string, processes ...string) error {
	r.record(group, "SuspendProcesses", "%s", strings.Join(processes, ","))
	return nil
}

func (r *recordingCloud) SetInstanceProtection(_ context.Context, group string, ids []string, protected bool) error {
	r.record(group, "SetInstanceProtection", "protected=%t %s", protected, strings.Join(ids, ","))
	return nil
}

func (r *recordingCloud) PutLifecycleHook(_ context.Context, h asg.Hook) error {
	r.record(h.Group, "PutLifecycleHook", "%s %s heartbeat=%ds default=%s", h.Name, h.Transition, h.HeartbeatTimeout, h.DefaultResult)
	return nil
}

func (r *recordingCloud) RecordLifecycleActionHeartbeat(_ context.Context, group, hook, instance string) error {
	r.record(group, "RecordLifecycleActionHeartbeat", "%s %s", hook, instance)
	return nil
}

func (r *recordingCloud) CompleteLifecycleAction(_ context.Context, group, hook, instance, result string) error {
	r.record(group, "CompleteLifecycleAction", "%s %s %s", hook, instance, result)
	return nil
}

// PrintPlan writes the actions as a table.
func PrintPlan(w io.Writer, actions []Action) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tACTION\tDETAIL")
	for _, a := range actions {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Target, a.Verb, a.Detail)
	}
	if len(actions) == 0 {
		fmt.Fprintln(tw, "-\tnothing to do\t")
	}
	return tw.Flush()
}
