// Package deploy holds the kustomize manifests of Ballast (scheduler-secondary,
// scheduler-replacement, az-balancer) and the tests that render them, load the
// scheduler configs they carry, and apply every object to a real kube-apiserver.
package deploy
