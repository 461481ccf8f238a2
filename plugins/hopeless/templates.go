package hopeless

import (
	"context"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/shapes"
)

const (
	// InvalidNodeGroupsReason is the reason of the event on a node-group
	// ConfigMap that does not decode.
	InvalidNodeGroupsReason = "InvalidNodeGroups"
	invalidNodeGroupsAction = "Validate"
	// maxStalenessPeriod bounds how long a change of the templates'
	// freshness goes unnoticed.
	maxStalenessPeriod = 30 * time.Second
)

// templateSink is what the template state feeds: the shape store.
type templateSink interface {
	SetTemplates(*nodegroups.NodeGroupList, shapes.TemplateState)
}

// templateConfig is the node-group ConfigMap's state: the templates last
// decoded and whether they are trusted (ok, stale, invalid, missing). It
// hands every change to the store and then asks for a re-check, since
// templates are no framework event.
type templateConfig struct {
	store    templateSink
	recorder events.EventRecorder
	clock    clock.WithTicker
	maxAge   time.Duration
	logger   klog.Logger
	// changed is called after the store has the new templates.
	changed func()

	mu    sync.Mutex
	list  *nodegroups.NodeGroupList
	state shapes.TemplateState
}

// setConfigMap decodes the node groups. A malformed ConfigMap is reported
// and ignored: the plugin fails open and parks nothing. A ConfigMap without
// the list's key holds no list (az-balancer keeps only what it remembers of
// the groups' nodes there until it can publish one): the templates are
// missing, as without the ConfigMap, and nothing is reported.
func (t *templateConfig) setConfigMap(cm *v1.ConfigMap) {
	if _, ok := cm.Data[nodegroups.DataKey]; !ok {
		t.logger.V(2).Info("Node-group ConfigMap holds no list; parking nothing until one is published", "configMap", klog.KObj(cm), "key", nodegroups.DataKey)
		t.set(nil, shapes.TemplatesMissing)
		return
	}
	list, err := nodegroups.Decode(cm.Data)
	if err != nil {
		t.logger.Error(err, "Ignoring malformed node-group ConfigMap; parking nothing until it is fixed", "configMap", klog.KObj(cm))
		t.recorder.Eventf(cm, nil, v1.EventTypeWarning, InvalidNodeGroupsReason, invalidNodeGroupsAction, "%s: parking no pods until fixed: %v", Name, err)
		metricTemplateErrors.Inc()
		t.set(nil, shapes.TemplatesInvalid)
		return
	}
	t.set(list, t.stateOf(list))
}

// deleted records that the ConfigMap is gone.
func (t *templateConfig) deleted() { t.set(nil, shapes.TemplatesMissing) }

func (t *templateConfig) stateOf(list *nodegroups.NodeGroupList) shapes.TemplateState {
	if list.Stale(t.clock.Now(), t.maxAge) {
		return shapes.TemplatesStale
	}
	return shapes.TemplatesOK
}

func (t *templateConfig) set(list *nodegroups.NodeGroupList, state shapes.TemplateState) {
	t.mu.Lock()
	t.list, t.state = list, state
	t.mu.Unlock()
	t.store.SetTemplates(list, state)
	metricTemplateState.Set(templateStateValue(state))
	// Bring back the parked pods that the new templates (or failing open)
	// make schedulable.
	t.changed()
}

// stalenessPeriod is how often watchStaleness looks at the templates' age.
func (t *templateConfig) stalenessPeriod() time.Duration {
	period := t.maxAge / 4
	if period <= 0 || period > maxStalenessPeriod {
		period = maxStalenessPeriod
	}
	return period
}

// watchStaleness re-checks the templates' age, since nothing else happens
// when the balancer stops writing them.
func (t *templateConfig) watchStaleness(ctx context.Context) {
	ticker := t.clock.NewTicker(t.stalenessPeriod())
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
		}
		t.checkStaleness(klog.FromContext(ctx))
	}
}

// checkStaleness moves trusted templates to stale once they are too old,
// and back once they are fresh again.
func (t *templateConfig) checkStaleness(logger klog.Logger) {
	t.mu.Lock()
	list, state := t.list, t.state
	t.mu.Unlock()
	if list == nil || (state != shapes.TemplatesOK && state != shapes.TemplatesStale) {
		return
	}
	if now := t.stateOf(list); now != state {
		logger.Info("Node-group templates changed freshness", "state", now)
		t.set(list, now)
	}
}
