// Package app is az-balancer's command line: the root command and its
// subcommands run, plan and split (split.go), with klog's -v and --vmodule
// on every one of them. Exit codes are kube-scheduler's: 0 on shutdown, 1 on
// an error or a lost leader lease.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/component-base/logs"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/ballast-k8s/ballast/cmd/az-balancer/app/options"
	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/balancer"
	"github.com/ballast-k8s/ballast/internal/version"

	// The AWS SDK verifies AWS's certificates; the image has no CA bundle
	// (FROM scratch), so the Mozilla roots are compiled in. They are used
	// only where the system has none.
	_ "golang.org/x/crypto/x509roots/fallback"
)

// ErrLeaseLost is what run returns when the leader lease is lost while the
// process is not shutting down: kube-scheduler exits 1 then, and so does
// az-balancer, so that its restart starts a fresh election.
var ErrLeaseLost = errors.New("lost the leader lease")

// Main runs the command line and returns the process's exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	cmd := NewCommand()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	err := cmd.Execute()
	klog.Flush()
	if err != nil {
		fmt.Fprintln(stderr, "az-balancer:", err)
	}
	return exitCode(err)
}

// exitCode: 0 on success or shutdown, 1 on any error, a lost lease included.
func exitCode(err error) int {
	if err != nil {
		return 1
	}
	return 0
}

// NewCommand returns the root command, az-balancer, with its subcommands.
func NewCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "az-balancer",
		Short: "Keep cluster-autoscaler's AWS node groups zonal and publish their templates",
		Long: `az-balancer runs beside cluster-autoscaler on AWS. It keeps multi-zone Auto Scaling groups
from rebalancing, protects the nodes of bound local volumes from scale-in and publishes the
node-group templates the scheduler reads.`,
		Version:       fmt.Sprintf("%s (commit %s)", version.Version(), version.Revision()),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fmt.Errorf("a command is required: run, plan or split (az-balancer --help)")
		},
	}
	root.SetVersionTemplate("az-balancer {{.Version}}\n")
	logs.AddFlags(root.PersistentFlags()) // -v, --vmodule, --log-flush-frequency
	root.AddCommand(newRunCommand(), newPlanCommand(), newSplitCommand(), &cobra.Command{
		Use:   "version",
		Short: "Print the version, as --version does",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "az-balancer %s\n", root.Version)
		},
	})
	return root
}

// addOptions registers the options' flags on cmd; the returned function
// completes them (AZ_BALANCER_* fallbacks) and validates them.
func addOptions(cmd *cobra.Command) (*options.Options, func() error) {
	o := &options.Options{}
	o.AddFlags(cmd.Flags())
	if cmd.Name() != "split" {
		_ = cmd.Flags().MarkHidden("dry-run") // split's alone
	}
	return o, func() error {
		if o.DryRun && cmd.Name() != "split" {
			return fmt.Errorf("--dry-run is for split; %s has plan for that", cmd.Name())
		}
		if err := options.ApplyEnv(cmd.Flags()); err != nil {
			return err
		}
		return o.Validate()
	}
}

// noArgs is cobra.NoArgs with the message az-balancer always gave.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%s takes no arguments, got %q", cmd.Name(), args)
	}
	return nil
}

func newRunCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Reconcile every --interval while holding the leader lease",
		Long: `run reconciles every --interval (leader-elected unless --leader-elect=false): it suspends
AZRebalance on multi-zone groups (--enforce=split also splits them into one group per zone),
holds the termination of nodes with bound local volumes, and writes the node-group ConfigMap.
It serves /metrics and /healthz. Every flag falls back to its AZ_BALANCER_<FLAG> variable.
Exit code: 0 on shutdown (SIGTERM), 1 on an error or a lost leader lease.`,
		Args: noArgs,
	}
	o, complete := addOptions(cmd)
	cmd.RunE = runE(complete, func(ctx context.Context, _ []string) error { return runLoop(ctx, o) })
	return cmd
}

func newPlanCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Run one loop against a sandbox and print what run would do",
		Long: `plan runs one loop of run against a recording sandbox and prints the actions run would
take; it changes nothing, in Kubernetes or in AWS.`,
		Args: noArgs,
	}
	o, complete := addOptions(cmd)
	cmd.RunE = runE(complete, func(ctx context.Context, _ []string) error {
		kube, err := kubeClient(o)
		if err != nil {
			return err
		}
		cloud, err := newCloud(ctx, o, prometheus.NewRegistry())
		if err != nil {
			return err
		}
		b := balancer.New(kube, cloud, &record.FakeRecorder{}, clock.RealClock{}, balancerOptions(o), nil)
		actions, err := b.Plan(ctx)
		if perr := balancer.PrintPlan(cmd.OutOrStdout(), actions); perr != nil {
			return perr
		}
		return err
	})
	return cmd
}

func newSplitCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "split <group>",
		Short: "Split one Auto Scaling group into one group per zone",
		Long: `split splits one group into one group per zone, moving its instances; it waits while they
detach. It is resumable: run it again after a failure. It excludes run --enforce=split on the
group (split lock). With --dry-run it prints the steps of the next pass and changes nothing.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("split takes one group name, got %d arguments", len(args))
			}
			return nil
		},
	}
	o, complete := addOptions(cmd)
	cmd.RunE = runE(complete, func(ctx context.Context, args []string) error {
		cloud, err := newCloud(ctx, o, prometheus.NewRegistry())
		if err != nil {
			return err
		}
		return runSplit(ctx, cloud, splitOptions(o), args[0], o.DryRun, cmd.OutOrStdout())
	})
	return cmd
}

// runE completes the options, then runs f with a context that ends on
// SIGINT or SIGTERM (a shutdown).
func runE(complete func() error, f func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
	return func(_ *cobra.Command, args []string) error {
		if err := complete(); err != nil {
			return err
		}
		ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer cancel()
		return f(ctx, args)
	}
}

func kubeClient(o *options.Options) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return kubernetes.NewForConfig(cfg)
}

// newCloud builds the AWS client of the options.
func newCloud(ctx context.Context, o *options.Options, reg prometheus.Registerer) (*asg.Client, error) {
	return asg.New(ctx, asg.Options{Region: o.Region, Endpoint: o.AWSEndpoint, EKSEndpoint: o.EKSEndpoint, DisableEKS: !o.EKSDescribeNodegroups, Registerer: reg})
}

// selector: the groups named by --asg-names, or discovered by --cluster-name.
func selector(o *options.Options) asg.Selector {
	if o.ClusterName != "" {
		return asg.AutoDiscovery(o.ClusterName)
	}
	return asg.Selector{Names: o.ASGNames}
}

func balancerOptions(o *options.Options) balancer.Options {
	return balancer.Options{
		Selector: selector(o), ConfigMapNamespace: o.ConfigMapNamespace, ConfigMapName: o.ConfigMapName,
		HeartbeatTimeout: o.HeartbeatTimeout, TemplateRefresh: o.TemplateRefresh, Enforce: o.Enforce,
		MaxOrphanReleases: o.OrphanReleases(), Templates: o.TemplateOptions(),
	}
}

// runLoop is `az-balancer run`.
func runLoop(ctx context.Context, o *options.Options) error {
	kube, err := kubeClient(o)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cloud, err := newCloud(ctx, o, reg)
	if err != nil {
		return err
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "az-balancer"})
	b := balancer.New(kube, cloud, recorder, clock.RealClock{}, balancerOptions(o), reg)

	serve(ctx, o.MetricsBindAddress, "/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	health := http.NewServeMux()
	health.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := b.Healthy(o.UnhealthyAfter); err != nil { // never waits for a running loop
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	health.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	serve(ctx, o.HealthProbeBindAddress, "", health)

	loop := func(ctx context.Context) { b.Run(ctx, o.Interval) }
	if !o.LeaderElect {
		loop(ctx)
		return nil
	}
	id, err := os.Hostname()
	if err != nil {
		return err
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.LeaderElectionNamespace, Name: o.LeaderElectionName},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id, EventRecorder: recorder},
	}
	return leaderElect(ctx, lock, defaultLeaseTimings, loop)
}

// leaseTimings are the leader election's durations; tests shorten them.
type leaseTimings struct{ lease, renew, retry time.Duration }

var defaultLeaseTimings = leaseTimings{lease: 15 * time.Second, renew: 10 * time.Second, retry: 2 * time.Second}

// leaderElect runs loop while holding lock, until ctx ends (nil: a shutdown,
// the lease released) or the lease is lost (ErrLeaseLost), as kube-scheduler's
// OnStoppedLeading tells the two apart.
func leaderElect(ctx context.Context, lock resourcelock.Interface, t leaseTimings, loop func(context.Context)) error {
	var lost atomic.Bool
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, ReleaseOnCancel: true, Name: "az-balancer",
		LeaseDuration: t.lease, RenewDeadline: t.renew, RetryPeriod: t.retry,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: loop,
			OnStoppedLeading: func() {
				if ctx.Err() != nil {
					klog.FromContext(ctx).Info("Released the leader lease on shutdown")
					return
				}
				lost.Store(true)
			},
		},
	})
	if err != nil {
		return err
	}
	le.Run(ctx)
	if lost.Load() {
		return ErrLeaseLost
	}
	return nil
}

// serve runs an HTTP server until ctx ends; addr "0" or "" disables it.
func serve(ctx context.Context, addr, path string, h http.Handler) {
	if addr == "" || addr == "0" {
		return
	}
	if path != "" {
		mux := http.NewServeMux()
		mux.Handle(path, h)
		h = mux
	}
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.FromContext(ctx).Error(err, "HTTP server failed", "address", addr)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
}
