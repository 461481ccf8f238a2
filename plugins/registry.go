// Package plugins registers every Ballast scheduler plugin.
package plugins

import (
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"

	"github.com/ballast-k8s/ballast/plugins/hopeless"
)

// Registry returns the out-of-tree registry of Ballast's plugins, for the
// benchmarks and tests, which run the scheduler without leader election.
func Registry() frameworkruntime.Registry {
	return frameworkruntime.Registry{
		hopeless.Name: hopeless.New,
	}
}

// RegistryFor returns the registry for cmd/scheduler, which tells the
// plugins how it elects its leader and what its profiles configure once it
// has read its configuration.
func RegistryFor(election *hopeless.LeaderElection, sched *hopeless.SchedulerConfig) frameworkruntime.Registry {
	return frameworkruntime.Registry{
		hopeless.Name: hopeless.NewFactory(election, sched),
	}
}
