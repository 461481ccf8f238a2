package options

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

func TestOptions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    func(*Options)
		wantErr string
	}{
		{name: "cluster name", args: []string{"--cluster-name=prod"}, want: func(o *Options) { o.ClusterName = "prod" }},
		{name: "names from env", env: map[string]string{"AZ_BALANCER_ASG_NAMES": "a,b", "AZ_BALANCER_INTERVAL": "1m"},
			want: func(o *Options) { o.ASGNames, o.Interval = []string{"a", "b"}, time.Minute }},
		{name: "flag beats env", args: []string{"--cluster-name=flag"}, env: map[string]string{"AZ_BALANCER_CLUSTER_NAME": "env"}, want: func(o *Options) { o.ClusterName = "flag" }},
		{name: "neither cluster nor names", wantErr: "exactly one of --cluster-name and --asg-names"},
		{name: "both", args: []string{"--cluster-name=x", "--asg-names=a"}, wantErr: "exactly one"},
		{name: "heartbeat shorter than two loops", args: []string{"--cluster-name=x", "--interval=4m", "--lifecycle-heartbeat-timeout=5m"}, wantErr: "at least twice --interval"},
		{name: "heartbeat out of range", args: []string{"--cluster-name=x", "--lifecycle-heartbeat-timeout=3h"}, wantErr: "between 30s and 2h"},
		{name: "unhealthy-after", args: []string{"--cluster-name=x", "--unhealthy-after=20m"}, want: func(o *Options) { o.ClusterName, o.UnhealthyAfter = "x", 20*time.Minute }},
		{name: "unhealthy-after shorter than two loops", args: []string{"--cluster-name=x", "--interval=2m", "--lifecycle-heartbeat-timeout=10m", "--unhealthy-after=3m"}, wantErr: "--unhealthy-after (3m0s) must be at least twice --interval"},
		{name: "bad env value", env: map[string]string{"AZ_BALANCER_INTERVAL": "soon"}, wantErr: "AZ_BALANCER_INTERVAL"},
		{name: "unknown flag", args: []string{"--clustername=x"}, wantErr: "unknown flag"},
		{name: "CA taint flags", args: []string{"--cluster-name=x", "--startup-taint=node.cilium.io/agent-not-ready", "--startup-taint=b", "--ignore-taint=old",
			"--status-taint=example.com/degraded", "--startup-taint-prefix=boot.example.com/"},
			want: func(o *Options) {
				o.ClusterName, o.StartupTaints, o.IgnoreTaints = "x", []string{"node.cilium.io/agent-not-ready", "b"}, []string{"old"}
				o.StatusTaints, o.StartupTaintPrefixes = []string{"example.com/degraded"}, []string{"boot.example.com/"}
			}},
		{name: "taint flag from env", args: []string{"--cluster-name=x"}, env: map[string]string{"AZ_BALANCER_STATUS_TAINT": "s"},
			want: func(o *Options) { o.ClusterName, o.StatusTaints = "x", []string{"s"} }},
		{name: "taint flag with a value", args: []string{"--cluster-name=x", "--startup-taint=k=v:NoSchedule"}, wantErr: "is not a taint key"},
		{name: "empty taint prefix", args: []string{"--cluster-name=x", "--startup-taint-prefix="}, wantErr: "--startup-taint-prefix must not be empty"},
		{name: "EKS off", args: []string{"--cluster-name=x", "--eks-describe-nodegroups=false", "--eks-endpoint=http://127.0.0.1:1"},
			want: func(o *Options) {
				o.ClusterName, o.EKSDescribeNodegroups, o.EKSEndpoint = "x", false, "http://127.0.0.1:1"
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			fs.SetOutput(&strings.Builder{})
			o := &Options{}
			o.AddFlags(fs)
			err := fs.Parse(tc.args)
			if err == nil {
				err = ApplyEnv(fs)
			}
			if err == nil {
				err = o.Validate()
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			def := &Options{}
			def.AddFlags(pflag.NewFlagSet("defaults", pflag.ContinueOnError))
			tc.want(def)
			if diff := cmp.Diff(def, o); diff != "" {
				t.Errorf("options (-want, +got):\n%s", diff)
			}
			if tc.name == "CA taint flags" {
				got := o.TemplateOptions()
				if want := []string{"old", "node.cilium.io/agent-not-ready", "b"}; !cmp.Equal(got.StartupTaints, want) {
					t.Errorf("TemplateOptions().StartupTaints = %v, want %v (--ignore-taint is a startup taint, as in CA)", got.StartupTaints, want)
				}
			}
		})
	}
}
