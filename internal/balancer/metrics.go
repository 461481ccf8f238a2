package balancer

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reconciles       *prometheus.CounterVec
	duration         prometheus.Histogram
	multiZoneGroups  prometheus.Gauge
	protectedNodes   prometheus.Gauge
	orphanedVolumes  prometheus.Gauge
	heldTerminations prometheus.Gauge
	malformedTags    prometheus.Counter
	orphanReleases   *prometheus.CounterVec
	splitStranded    *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "ballast", "az_balancer"
	m := &metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "reconciles_total",
			Help: "Reconcile loops by result (success, error)."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "reconcile_duration_seconds",
			Help: "Duration of a reconcile loop.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 12)}),
		multiZoneGroups: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "multi_zone_groups",
			Help: "Managed Auto Scaling groups that span more than one zone."}),
		protectedNodes: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "protected_nodes",
			Help: "Nodes holding bound local volumes, protected from scale-down."}),
		orphanedVolumes: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "orphaned_volumes",
			Help: "Bound local volumes whose node or instance is gone."}),
		heldTerminations: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "held_terminations",
			Help: "Instances with bound local volumes held in Terminating:Wait by the balancer's hook."}),
		malformedTags: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "malformed_tags_total",
			Help: "Distinct malformed node-template tags seen and skipped."}),
		orphanReleases: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "orphan_releases_total",
			Help: "Claims of orphaned local volumes the balancer deleted or tried to, by result (deleted, precondition_failed, skipped, error)."}, []string{"result"}),
		splitStranded: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "split_stranded_instances",
			Help: "Instances a split leaves in the group being split because AttachInstances would refuse them (their AMI is gone), by group."}, []string{"group"}),
	}
	if reg != nil {
		reg.MustRegister(m.reconciles, m.duration, m.multiZoneGroups, m.protectedNodes, m.orphanedVolumes, m.heldTerminations, m.malformedTags, m.orphanReleases, m.splitStranded)
	}
	return m
}

func (m *metrics) observe(d time.Duration, err error) {
	m.duration.Observe(d.Seconds())
	result := "success"
	if err != nil {
		result = "error"
	}
	m.reconciles.WithLabelValues(result).Inc()
}
