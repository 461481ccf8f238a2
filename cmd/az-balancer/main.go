// Command az-balancer runs beside cluster-autoscaler on AWS: `run` keeps
// multi-zone groups from rebalancing, protects the nodes of bound local volumes
// and publishes node-group templates; `plan` prints what `run` would do.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/ballast-k8s/ballast/internal/aws"
	"github.com/ballast-k8s/ballast/internal/balancer"
	"github.com/ballast-k8s/ballast/internal/version"

	// The AWS SDK verifies AWS's certificates; the image has no CA bundle
	// (FROM scratch), so the Mozilla roots are compiled in. They are used
	// only where the system has none.
	_ "golang.org/x/crypto/x509roots/fallback"
)

const usage = `usage: az-balancer run|plan [flags]
       az-balancer split <group> [--dry-run] [flags]
       az-balancer --version

  run    reconcile every --interval (leader-elected); --enforce=split also splits multi-zone groups
  plan   run one loop against a sandbox and print what run would do
  split  split one group into one group per zone, moving its instances; waits while they detach;
         resumable: run it again after a failure; excludes run --enforce=split on the group (split lock)
`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "az-balancer:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "version") {
		fmt.Printf("az-balancer %s (commit %s)\n", version.Version(), version.Revision())
		return nil
	}
	if len(args) == 0 || (args[0] != "run" && args[0] != "plan" && args[0] != "split") {
		return errors.New(usage)
	}
	cmd := args[0]
	fs := pflag.NewFlagSet("az-balancer "+cmd, pflag.ContinueOnError)
	o := &options{}
	o.AddFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var group string
	switch {
	case cmd == "split" && fs.NArg() != 1:
		return fmt.Errorf("split takes one group name, got %d arguments\n%s", fs.NArg(), usage)
	case cmd == "split":
		group = fs.Arg(0)
	case fs.NArg() > 0:
		return fmt.Errorf("%s takes no arguments, got %q", cmd, fs.Args())
	}
	if o.DryRun && cmd != "split" {
		return fmt.Errorf("--dry-run is for split; %s has plan for that", cmd)
	}
	if err := applyEnv(fs); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	var kube kubernetes.Interface // split talks to AWS only
	if cmd != "split" {
		cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
		if err != nil {
			return fmt.Errorf("kubeconfig: %w", err)
		}
		if kube, err = kubernetes.NewForConfig(cfg); err != nil {
			return err
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cloud, err := aws.New(ctx, aws.Options{Region: o.Region, Endpoint: o.AWSEndpoint, Registerer: reg})
	if err != nil {
		return err
	}
	sel := aws.Selector{Names: o.ASGNames}
	if o.ClusterName != "" {
		sel = aws.AutoDiscovery(o.ClusterName)
	}
	bopts := balancer.Options{
		Selector: sel, ConfigMapNamespace: o.ConfigMapNamespace, ConfigMapName: o.ConfigMapName,
		HeartbeatTimeout: o.HeartbeatTimeout, TemplateRefresh: o.TemplateRefresh, Enforce: o.Enforce,
		MaxOrphanReleases: releases(o.MaxOrphanReleases),
	}

	if cmd == "split" {
		return runSplit(ctx, cloud, sel, group, o.DryRun, os.Stdout)
	}

	if cmd == "plan" {
		b := balancer.New(kube, cloud, &record.FakeRecorder{}, clock.RealClock{}, bopts, nil)
		actions, err := b.Plan(ctx)
		if perr := balancer.PrintPlan(os.Stdout, actions); perr != nil {
			return perr
		}
		return err
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "az-balancer"})
	b := balancer.New(kube, cloud, recorder, clock.RealClock{}, bopts, reg)

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

	if !o.LeaderElect {
		b.Run(ctx, o.Interval)
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
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock: lock, ReleaseOnCancel: true, Name: "az-balancer",
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) { b.Run(ctx, o.Interval) },
			OnStoppedLeading: func() { klog.Info("Lost or released the leader lease") },
		},
	})
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
			klog.ErrorS(err, "HTTP server failed", "address", addr)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
}
