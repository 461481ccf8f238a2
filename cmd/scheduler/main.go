// Command scheduler is kube-scheduler v1.37.2 with the Ballast plugins.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	"github.com/ballast-k8s/ballast/plugins"
)

func main() {
	var opts []app.Option
	for name, factory := range plugins.Registry() {
		opts = append(opts, app.WithPlugin(name, factory))
	}
	os.Exit(cli.Run(app.NewSchedulerCommand(opts...)))
}
