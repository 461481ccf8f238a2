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
	registerOnce sync.Once
)

func registerMetrics() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(metricParked, metricVerdicts, metricVerdictLatency, metricStatusWrites, metricTemplateState, metricTemplateErrors)
		metricTemplateState.Set(-1)
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
