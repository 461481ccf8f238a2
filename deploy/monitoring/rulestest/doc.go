// Package rulestest tests deploy/monitoring with Prometheus' own rule
// evaluation (rules.AlertingRule over promqltest storage) and PromQL parser.
// It is a module of its own, as hack/tools/etcd is, so that Prometheus'
// dependencies never move Kubernetes' in the main module.
package rulestest
