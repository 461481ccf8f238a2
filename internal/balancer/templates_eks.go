package balancer

import "time"

// TemplateOptions are cluster-autoscaler's flags that change its templates.
type TemplateOptions struct {
	StartupTaints, StatusTaints, StartupTaintPrefixes []string
}

const (
	eksCacheTTL   = 6 * time.Minute
	eksErrorRetry = time.Minute
)

const ReasonMalformedEKSNodegroup = "MalformedEKSNodegroup"
