package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/latest"

	"github.com/ballast-k8s/ballast/plugins"
	"github.com/ballast-k8s/ballast/plugins/hopeless"
)

// newCommand is kube-scheduler's command with Ballast's plugins. Before the
// scheduler starts, it works out the leader election the scheduler will run
// with and hands it to the plugins: only the leader may write pod status,
// and in v1.37.2 a standby cannot tell it is one until its elector exists.
func newCommand() *cobra.Command {
	election := &hopeless.LeaderElection{}
	sched := &hopeless.SchedulerConfig{}
	var opts []app.Option
	for name, factory := range plugins.RegistryFor(election, sched) {
		opts = append(opts, app.WithPlugin(name, factory))
	}
	cmd := app.NewSchedulerCommand(opts...)
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		// On error the scheduler reads the same file next and reports it.
		if le, err := leaderElection(c.Flags()); err == nil {
			*election = le
		}
		if sc, err := schedulerConfig(c.Flags()); err == nil {
			*sched = sc
		}
		return run(c, args)
	}
	return cmd
}

// leaderElection is the effective leader election of kube-scheduler v1.37.2
// for these parsed flags, as options.ApplyTo computes it: the config file's
// (or the defaults' without --config), overridden by every --leader-elect*
// flag given on the command line (the elector's gauge is named
// kube-scheduler whatever the lease is called, so the lease does not matter).
func leaderElection(fs *pflag.FlagSet) (hopeless.LeaderElection, error) {
	cfg, err := loadConfig(fs)
	if err != nil {
		return hopeless.LeaderElection{}, err
	}
	le := hopeless.LeaderElection{Enabled: cfg.LeaderElection.LeaderElect}
	if fs.Changed("leader-elect") {
		if le.Enabled, err = fs.GetBool("leader-elect"); err != nil {
			return hopeless.LeaderElection{}, err
		}
	}
	return le, nil
}

// schedulerConfig is what the plugin mirrors of the profiles and extenders
// kube-scheduler v1.37.2 runs with for these parsed flags: the config file's
// (decoded and defaulted, as options.ApplyTo has them), or the defaults'
// without --config. No flag changes them.
func schedulerConfig(fs *pflag.FlagSet) (hopeless.SchedulerConfig, error) {
	cfg, err := loadConfig(fs)
	if err != nil {
		return hopeless.SchedulerConfig{}, err
	}
	return hopeless.SchedulerConfig{Loaded: true, Profiles: cfg.Profiles, Extenders: cfg.Extenders}, nil
}

// loadConfig is the configuration --config names, or the defaults.
func loadConfig(fs *pflag.FlagSet) (*config.KubeSchedulerConfiguration, error) {
	if f := fs.Lookup("config"); f != nil && f.Value.String() != "" {
		return options.LoadConfigFromFile(klog.Background(), f.Value.String())
	}
	return latest.Default()
}
