// Package options holds az-balancer's command-line options: their flags, the
// AZ_BALANCER_* environment fallbacks and their validation. Tests (deploy/)
// import it to check the manifests' arguments against the real flags.
package options

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/balancer"
)

// DefaultUnhealthyAfter is the --unhealthy-after default: long enough that a
// loop slowed down by throttling is not killed, and well within the default
// heartbeat timeout (held terminations are heartbeaten by their own timer).
const DefaultUnhealthyAfter = 10 * time.Minute

// DefaultInterval is the --interval default: the time between two loops.
const DefaultInterval = 30 * time.Second

// EnvPrefix: every flag falls back to AZ_BALANCER_<FLAG>, e.g. AZ_BALANCER_CLUSTER_NAME.
const EnvPrefix = "AZ_BALANCER_"

// Options are the flags of az-balancer run, plan and split.
type Options struct {
	Kubeconfig              string
	ClusterName             string
	ASGNames                []string
	Interval                time.Duration
	HeartbeatTimeout        time.Duration
	UnhealthyAfter          time.Duration
	TemplateRefresh         time.Duration
	MaxOrphanReleases       int
	ConfigMapNamespace      string
	ConfigMapName           string
	AWSEndpoint             string
	Region                  string
	MetricsBindAddress      string
	HealthProbeBindAddress  string
	LeaderElect             bool
	LeaderElectionNamespace string
	LeaderElectionName      string
	Enforce                 string
	DryRun                  bool
	// EKS managed node groups and cluster-autoscaler's template flags.
	EKSDescribeNodegroups bool
	EKSEndpoint           string
	StartupTaints         []string
	IgnoreTaints          []string
	StatusTaints          []string
	StartupTaintPrefixes  []string
}

// AddFlags registers every flag on fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "Path to a kubeconfig; in-cluster configuration when empty.")
	fs.StringVar(&o.ClusterName, "cluster-name", "", "Discover the groups tagged for cluster-autoscaler's auto-discovery of this cluster (k8s.io/cluster-autoscaler/enabled and k8s.io/cluster-autoscaler/<cluster-name>).")
	fs.StringSliceVar(&o.ASGNames, "asg-names", nil, "Manage these Auto Scaling groups instead of discovering them.")
	fs.DurationVar(&o.Interval, "interval", DefaultInterval, "Time between two loops.")
	fs.DurationVar(&o.HeartbeatTimeout, "lifecycle-heartbeat-timeout", balancer.DefaultHeartbeatTimeout, "Heartbeat timeout of the termination hook (30s to 2h); at least twice --interval. Held terminations are heartbeaten every third of it, whatever the loop is doing.")
	fs.DurationVar(&o.UnhealthyAfter, "unhealthy-after", DefaultUnhealthyAfter, "/healthz fails once the leader has gone this long without a successful loop (counted from its start until a first loop succeeds); at least twice --interval. A standby replica is healthy.")
	fs.DurationVar(&o.TemplateRefresh, "template-refresh", balancer.DefaultTemplateRefresh, "Longest time between two writes of the node-group ConfigMap.")
	fs.IntVar(&o.MaxOrphanReleases, "max-orphan-releases-per-loop", balancer.DefaultMaxOrphanReleases, "Most claims of orphaned local volumes deleted in one loop (only for StorageClasses annotated "+balancer.AnnotationReleaseOrphansAfter+"); 0 releases none, orphans are then only reported.")
	fs.StringVar(&o.ConfigMapNamespace, "configmap-namespace", nodegroups.DefaultNamespace, "Namespace of the node-group ConfigMap.")
	fs.StringVar(&o.ConfigMapName, "configmap-name", nodegroups.DefaultName, "Name of the node-group ConfigMap.")
	fs.StringVar(&o.AWSEndpoint, "aws-endpoint", "", "Override the Auto Scaling, EC2 and (unless --eks-endpoint) EKS endpoint URL (an emulator, a VPC endpoint).")
	fs.StringVar(&o.Region, "region", "", "AWS region; the SDK's default chain when empty.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", ":8080", "Address of /metrics; 0 disables it.")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz; 0 disables it.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", true, "Run the loop only while holding the leader Lease.")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "kube-system", "Namespace of the leader Lease.")
	fs.StringVar(&o.LeaderElectionName, "leader-election-name", "ballast-az-balancer", "Name of the leader Lease.")
	fs.StringVar(&o.Enforce, "enforce", balancer.EnforceSuspend, "Zone policy for groups that span zones: "+
		"suspend (report them and suspend AZRebalance) or split (also split them into one group per zone, moving the instances).")
	fs.BoolVar(&o.DryRun, "dry-run", false, "With split: print the steps without making them.")
	fs.BoolVar(&o.EKSDescribeNodegroups, "eks-describe-nodegroups", true, "Ask EKS DescribeNodegroup for the labels and taints of EKS managed node groups, as cluster-autoscaler does. "+
		"With false their templates cannot be built, and no node-group list is published while a managed node group is discovered (the scheduler plugin fails open).")
	fs.StringVar(&o.EKSEndpoint, "eks-endpoint", "", "Override the EKS endpoint URL; --aws-endpoint when empty, else the SDK's.")
	fs.StringArrayVar(&o.StartupTaints, "startup-taint", nil, "A taint key left out of templates, as cluster-autoscaler's --startup-taint, and whose node is no template node yet; repeat it. Give both containers the same values.")
	fs.StringArrayVar(&o.IgnoreTaints, "ignore-taint", nil, "As cluster-autoscaler's deprecated --ignore-taint (the same as --startup-taint); repeat it.")
	fs.StringArrayVar(&o.StatusTaints, "status-taint", nil, "A taint key left out of templates, as cluster-autoscaler's --status-taint; repeat it.")
	fs.StringArrayVar(&o.StartupTaintPrefixes, "startup-taint-prefix", nil, "Taints whose key starts with it are left out of templates, and their node is no template node yet, as cluster-autoscaler's --startup-taint-prefix; repeat it.")
}

// TemplateOptions are the cluster-autoscaler template flags for balancer.Options.
func (o *Options) TemplateOptions() balancer.TemplateOptions {
	return balancer.TemplateOptions{
		StartupTaints:        append(slices.Clone(o.IgnoreTaints), o.StartupTaints...),
		StatusTaints:         slices.Clone(o.StatusTaints),
		StartupTaintPrefixes: slices.Clone(o.StartupTaintPrefixes),
	}
}

// ApplyEnv sets every flag not given on the command line from its environment variable.
func ApplyEnv(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		env := EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	return errors.Join(errs...)
}

// Validate reports every bad value at once.
func (o *Options) Validate() error {
	var errs []error
	if (o.ClusterName == "") == (len(o.ASGNames) == 0) {
		errs = append(errs, errors.New("set exactly one of --cluster-name and --asg-names"))
	}
	for _, n := range o.ASGNames {
		if strings.TrimSpace(n) == "" {
			errs = append(errs, errors.New("--asg-names has an empty name"))
		}
	}
	if o.Interval <= 0 {
		errs = append(errs, fmt.Errorf("--interval must be positive, got %s", o.Interval))
	}
	if o.HeartbeatTimeout < 30*time.Second || o.HeartbeatTimeout > 2*time.Hour {
		errs = append(errs, fmt.Errorf("--lifecycle-heartbeat-timeout must be between 30s and 2h, got %s", o.HeartbeatTimeout))
	} else if o.HeartbeatTimeout < 2*o.Interval {
		errs = append(errs, fmt.Errorf("--lifecycle-heartbeat-timeout (%s) must be at least twice --interval (%s), or held instances time out between loops", o.HeartbeatTimeout, o.Interval))
	}
	if o.UnhealthyAfter < 2*o.Interval {
		errs = append(errs, fmt.Errorf("--unhealthy-after (%s) must be at least twice --interval (%s)", o.UnhealthyAfter, o.Interval))
	}
	if o.TemplateRefresh <= 0 {
		errs = append(errs, errors.New("--template-refresh must be positive"))
	}
	if o.ConfigMapNamespace == "" || o.ConfigMapName == "" {
		errs = append(errs, errors.New("--configmap-namespace and --configmap-name must not be empty"))
	}
	if !slices.Contains(balancer.EnforceValues, o.Enforce) {
		errs = append(errs, fmt.Errorf("--enforce must be one of %s, got %q", strings.Join(balancer.EnforceValues, ", "), o.Enforce))
	}
	for _, f := range []struct {
		flag string
		keys []string
	}{{"--startup-taint", o.StartupTaints}, {"--ignore-taint", o.IgnoreTaints}, {"--status-taint", o.StatusTaints}} {
		flag := f.flag
		for _, k := range f.keys {
			if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
				errs = append(errs, fmt.Errorf("%s %q is not a taint key (cluster-autoscaler's flag takes a key, not key=value:Effect): %s", flag, k, strings.Join(msgs, "; ")))
			}
		}
	}
	for _, p := range o.StartupTaintPrefixes {
		if strings.TrimSpace(p) == "" {
			errs = append(errs, errors.New("--startup-taint-prefix must not be empty: it would leave every taint out of the templates"))
		}
	}
	if o.LeaderElect && (o.LeaderElectionNamespace == "" || o.LeaderElectionName == "") {
		errs = append(errs, errors.New("--leader-election-namespace and --leader-election-name must not be empty"))
	}
	return errors.Join(errs...)
}

// OrphanReleases maps --max-orphan-releases-per-loop to
// balancer.Options.MaxOrphanReleases, where 0 means the default and a negative
// value none.
func (o *Options) OrphanReleases() int {
	if o.MaxOrphanReleases <= 0 {
		return -1
	}
	return o.MaxOrphanReleases
}
