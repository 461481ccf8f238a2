package hopeless

import (
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// SchedulerConfig is the scheduler configuration the binary runs with, as
// far as it changes the static predicates: which filters each profile runs
// and NodeResourcesFit's ignored resources (shapes.Options.ApplyProfile).
// The framework hands a plugin neither its profile's plugin list nor other
// plugins' args, so cmd/scheduler reads its configuration and tells the
// plugin (NewFactory), as it does for LeaderElection.
type SchedulerConfig struct {
	// Loaded says the binary read its configuration. Until then (a binary
	// that does not say, or a file it could not read) the plugin cannot know
	// its profile and applies no static predicate.
	Loaded    bool
	Profiles  []config.KubeSchedulerProfile
	Extenders []config.Extender
}

// applyProfile sets in opts what the profile of the framework handle h
// changes. A nil sched is a binary that does not say (tests, benchmarks):
// the plugin assumes the default profile.
func applyProfile(logger klog.Logger, opts *shapes.Options, sched *SchedulerConfig, h fwk.Handle) {
	if sched == nil {
		return
	}
	var name string
	named, ok := h.(interface{ ProfileName() string })
	if ok {
		name = named.ProfileName()
	}
	if ok && sched.Loaded {
		for i := range sched.Profiles {
			if sched.Profiles[i].SchedulerName != name {
				continue
			}
			if err := opts.ApplyProfile(&sched.Profiles[i], sched.Extenders); err != nil {
				logger.Error(err, "HopelessPods cannot read part of its profile's configuration", "profile", name)
			}
			logger.V(2).Info("HopelessPods mirrors its profile", "profile", name,
				"disabledFilters", opts.DisabledFilters.UnsortedList(), "ignoredResources", opts.IgnoredResources.UnsortedList(),
				"ignoredResourceGroups", opts.IgnoredResourceGroups.UnsortedList())
			return
		}
	}
	logger.Info("HopelessPods cannot tell which filters its profile runs; it parks no pod on static predicates", "profile", name)
	opts.FailOpen()
}
