package shapes

import (
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	corev1helper "k8s.io/kubernetes/pkg/apis/core/v1/helper"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/names"
)

// MirroredFilters are the v1.37.2 filter plugins whose static part Check
// mirrors. A profile that does not run one of them as a filter gets no
// verdict from its predicate (see Options.DisabledFilters).
var MirroredFilters = []string{names.NodeAffinity, names.VolumeBinding, names.TaintToleration, names.NodeUnschedulable, names.NodeResourcesFit}

// ApplyProfile sets what the scheduler profile prof changes in the static
// predicates, with the configuration's extenders:
//
//   - DisabledFilters: the mirrored plugins prof does not run as filters,
//     computed as frameworkruntime's expandMultiPointPlugins builds the
//     filter list (pkg/scheduler/framework/runtime/framework.go): a plugin
//     filters when filter.enabled names it, or when multiPoint.enabled names
//     it and filter.disabled names neither it nor "*". prof is a decoded,
//     defaulted profile (options.LoadConfigFromFile, latest.Default), whose
//     multiPoint already has the defaults merged.
//   - IgnoredResources and IgnoredResourceGroups: NodeResourcesFit's args,
//     where scheduler.New (pkg/scheduler/scheduler.go buildExtenders)
//     replaces ignoredResources with every extender managedResource that has
//     ignoredByScheduler: true, when there is any.
//
// On an error (NodeResourcesFit args of another type) NodeResourcesFit's
// predicate is disabled: a configuration Ballast cannot read fails open.
func (o *Options) ApplyProfile(prof *config.KubeSchedulerProfile, extenders []config.Extender) error {
	o.DisabledFilters = sets.New[string]()
	for _, name := range MirroredFilters {
		if !filters(prof, name) {
			o.DisabledFilters.Insert(name)
		}
	}
	o.IgnoredResources, o.IgnoredResourceGroups = sets.New[string](), sets.New[string]()
	for _, pc := range prof.PluginConfig {
		if pc.Name != names.NodeResourcesFit {
			continue
		}
		args, ok := pc.Args.(*config.NodeResourcesFitArgs)
		if !ok {
			o.DisabledFilters.Insert(names.NodeResourcesFit)
			return fmt.Errorf("profile %q: %s args are %T, want NodeResourcesFitArgs; not checking requests against allocatable", prof.SchedulerName, names.NodeResourcesFit, pc.Args)
		}
		o.IgnoredResources.Insert(args.IgnoredResources...)
		o.IgnoredResourceGroups.Insert(args.IgnoredResourceGroups...)
	}
	var byExtenders []string
	for _, e := range extenders {
		for _, r := range e.ManagedResources {
			if r.IgnoredByScheduler {
				byExtenders = append(byExtenders, r.Name)
			}
		}
	}
	if len(byExtenders) > 0 {
		o.IgnoredResources = sets.New(byExtenders...)
	}
	return nil
}

// FailOpen disables every mirrored predicate, for a profile whose
// configuration cannot be known: no verdict is better than a false one.
func (o *Options) FailOpen() {
	o.DisabledFilters = sets.New(MirroredFilters...)
}

// filters says whether prof runs the plugin name as a filter.
func filters(prof *config.KubeSchedulerProfile, name string) bool {
	if prof.Plugins == nil {
		return false
	}
	has := func(ps []config.Plugin, n string) bool {
		for _, p := range ps {
			if p.Name == n {
				return true
			}
		}
		return false
	}
	f := prof.Plugins.Filter
	if has(f.Enabled, name) {
		return true
	}
	return has(prof.Plugins.MultiPoint.Enabled, name) && !has(f.Disabled, name) && !has(f.Disabled, "*")
}

// filtered says whether the profile runs the mirrored filter name.
func (o *Options) filtered(name string) bool { return !o.DisabledFilters.Has(name) }

// ignored mirrors NodeResourcesFit's fitsRequest: an extended resource named
// in ignoredResources, or whose group (the part before '/') is in
// ignoredResourceGroups, is not checked.
func (o *Options) ignored(name v1.ResourceName) bool {
	if !corev1helper.IsExtendedResourceName(name) {
		return false
	}
	var group string
	if o.IgnoredResourceGroups.Len() > 0 {
		group = strings.Split(string(name), "/")[0]
	}
	return o.IgnoredResources.Has(string(name)) || o.IgnoredResourceGroups.Has(group)
}
