// Package plugins registers every Ballast scheduler plugin.
package plugins

import (
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"

	"github.com/ballast-k8s/ballast/plugins/hopeless"
)

// Registry returns the out-of-tree registry of Ballast's plugins, for
// cmd/scheduler and the benchmarks.
func Registry() frameworkruntime.Registry {
	return frameworkruntime.Registry{
		hopeless.Name: hopeless.New,
	}
}
