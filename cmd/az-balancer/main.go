// Command az-balancer runs beside cluster-autoscaler on AWS: `run` keeps
// multi-zone groups from rebalancing, protects the nodes of bound local volumes
// and publishes node-group templates; `plan` prints what `run` would do;
// `split` splits one group into one group per zone. The commands live in
// cmd/az-balancer/app, their flags in cmd/az-balancer/app/options.
package main

import (
	"os"

	"github.com/ballast-k8s/ballast/cmd/az-balancer/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr))
}
