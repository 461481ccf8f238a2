package hopeless

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

const subsystem = "ballast_hopeless"

var (
	metricParked = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Subsystem:      subsystem,
		Name:           "parked_pods",
		Help:           "Pods parked as hopeless, by reason.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"reason"})
	metricVerdicts = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      subsystem,
		Name:           "verdicts_total",
		Help:           "Verdicts returned, by result (hopeless, feasible, fail-open) and whether they came from the cache.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result", "cached"})
	metricVerdictLatency = metrics.NewHistogram(&metrics.HistogramOpts{
		Subsystem:      subsystem,
		Name:           "verdict_duration_seconds",
		Help:           "Time to compute a verdict that was not cached.",
		Buckets:        metrics.ExponentialBuckets(1e-6, 4, 10),
		StabilityLevel: metrics.ALPHA,
	})
	metricStatusWrites = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      subsystem,
		Name:           "status_writes_total",
		Help:           "PodScheduled condition writes for pods parked before any attempt, by result.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})
	metricTemplateState = metrics.NewGauge(&metrics.GaugeOpts{
		Subsystem:      subsystem,
		Name:           "templates_trusted",
		Help:           "1 when node-group templates are in use and trusted, 0 when missing, stale or invalid (the plugin parks nothing), -1 when the cluster does not autoscale.",
		StabilityLevel: metrics.ALPHA,
	})
	metricTemplateErrors = metrics.NewCounter(&metrics.CounterOpts{
		Subsystem:      subsystem,
		Name:           "template_errors_total",
		Help:           "Malformed node-group ConfigMaps seen.",
		StabilityLevel: metrics.ALPHA,
	})
	// The owner metrics, exported by ownerMetrics (owners.go) at scrape
	// time: parked pods by the kind and namespace of their owning
	// controller (a Job resolved to its CronJob, a ReplicaSet to its
	// Deployment). Cardinality is bounded:
	// owner_kind is one of metricOwnerKinds, "other" (custom controllers)
	// or "none" (pods without a controller); namespace is one of the
	// maxOwnerNamespaces (20) namespaces with the most parked pods, or
	// "_other" for the sum of the rest. No owner names: the owner's event
	// names it.
	descOwnerParked = metrics.NewDesc(metrics.BuildFQName("", subsystem, "owner_parked_pods"),
		"Parked pods by the kind and namespace of their owning controller (Job resolved to CronJob, ReplicaSet to Deployment; none: no controller). The 20 namespaces with the most parked pods are named, the rest summed as _other.",
		[]string{"owner_kind", "namespace"}, nil, metrics.ALPHA, "")
	descOwnerMaxParked = metrics.NewDesc(metrics.BuildFQName("", subsystem, "owner_max_parked_pods"),
		"The most parked pods of any one owning controller of that kind in that namespace: a pile-up from one owner. Its event (reason HopelessPods) names it.",
		[]string{"owner_kind", "namespace"}, nil, metrics.ALPHA, "")
	metricOwnerEventWrites = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      subsystem,
		Name:           "owner_event_writes_total",
		Help:           "Writes of the one event per owning controller and reason (created, updated, error).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})
	metricOwnerLookups = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      subsystem,
		Name:           "owner_lookups_total",
		Help:           "Jobs resolved to find their CronJob, from a metadata-only informer of Jobs, by result (ok: the Job came; not-found: it did not within 30s of its pod; forbidden: listing or watching Jobs was refused; error: other list or watch errors).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})
	registerOnce sync.Once
)

func registerMetrics() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(metricParked, metricVerdicts, metricVerdictLatency, metricStatusWrites, metricTemplateState, metricTemplateErrors,
			metricOwnerEventWrites, metricOwnerLookups)
		legacyregistry.CustomMustRegister(ownerMetrics)
		metricTemplateState.Set(-1)
		// Every result from the start, so that rates and alerts see zeros.
		for _, r := range []string{"created", "updated", "error"} {
			metricOwnerEventWrites.WithLabelValues(r)
		}
		for _, r := range []string{"ok", "not-found", "forbidden", "error"} {
			metricOwnerLookups.WithLabelValues(r)
		}
	})
}

func templateStateValue(s shapes.TemplateState) float64 {
	switch s {
	case shapes.TemplatesOK:
		return 1
	case shapes.TemplatesNotUsed:
		return -1
	}
	return 0
}
