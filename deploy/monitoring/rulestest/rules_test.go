package rulestest

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
	"gopkg.in/yaml.v3"
)

var promQL = parser.NewParser(parser.Options{})

// ruleGroups reads spec.groups of the PrometheusRule and parses them as
// Prometheus parses a rule file (strict: unknown fields are errors).
func ruleGroups(t *testing.T) []rulefmt.RuleGroup {
	t.Helper()
	data, err := os.ReadFile("../prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cr struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Spec       struct {
			Groups yaml.Node `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(data, &cr); err != nil {
		t.Fatal(err)
	}
	if cr.APIVersion != "monitoring.coreos.com/v1" || cr.Kind != "PrometheusRule" {
		t.Fatalf("prometheusrule.yaml is %s %s", cr.APIVersion, cr.Kind)
	}
	file, err := yaml.Marshal(map[string]any{"groups": &cr.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	groups, errs := rulefmt.Parse(file, false, model.UTF8Validation, promQL, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("the rules do not load as Prometheus loads them: %v", errs)
	}
	return groups.Groups
}

func alertingRules(t *testing.T) map[string]rulefmt.Rule {
	t.Helper()
	out := map[string]rulefmt.Rule{}
	for _, g := range ruleGroups(t) {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule that is not an alert (%s): these tests only evaluate alerts", g.Name, r.Record)
				continue
			}
			out[r.Alert] = r
		}
	}
	return out
}

// scenario: synthetic series (promqltest's load syntax, from time 0) and
// whether the alert fires at given times.
type scenario struct {
	name   string
	series string
	firing map[time.Duration]bool
}

// evaluate runs rule r as a rule group with a 1m interval would, from 0 to
// the last checkpoint, and returns its firing alerts at each checkpoint.
func evaluate(t *testing.T, r rulefmt.Rule, sc scenario) map[time.Duration][]*rules.Alert {
	t.Helper()
	storage := promqltest.LoadedStorage(t, "load 1m\n"+sc.series)
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 50000000)
	query := rules.EngineQueryFunc(engine, storage)
	expr, err := promQL.ParseExpr(r.Expr)
	if err != nil {
		t.Fatal(err)
	}
	rule := rules.NewAlertingRule(r.Alert, expr, time.Duration(r.For), time.Duration(r.KeepFiringFor),
		labels.FromMap(r.Labels), labels.FromMap(r.Annotations), labels.EmptyLabels(), "", false, slog.New(slog.DiscardHandler))
	var end time.Duration
	for at := range sc.firing {
		end = max(end, at)
	}
	out := map[time.Duration][]*rules.Alert{}
	for at := time.Duration(0); at <= end; at += time.Minute {
		if _, err := rule.Eval(context.Background(), 0, time.Unix(0, 0).Add(at), query, nil, 0); err != nil {
			t.Fatalf("%s at %s: %v", r.Alert, at, err)
		}
		if _, ok := sc.firing[at]; ok {
			for _, a := range rule.ActiveAlerts() {
				if a.State == rules.StateFiring {
					out[at] = append(out[at], a)
				}
			}
		}
	}
	return out
}

var scenarios = map[string][]scenario{
	"BallastParkedPodsGrowing": {
		{"one more pod every minute for 5h (incident 8's CronJob, faster)",
			`ballast_hopeless_parked_pods{job="sched",reason="taint"} 0+1x300`,
			map[time.Duration]bool{2 * time.Hour: false, 4*time.Hour + 5*time.Minute: true}},
		{"two reasons, each growing every 10 minutes",
			`ballast_hopeless_parked_pods{job="sched",reason="taint"} 0+0.1x300
			 ballast_hopeless_parked_pods{job="sched",reason="requests"} 0+0.1x300`,
			map[time.Duration]bool{5 * time.Hour: true}},
		{"a large but stable number",
			`ballast_hopeless_parked_pods{job="sched",reason="taint"} 4000x300`,
			map[time.Duration]bool{5 * time.Hour: false}},
		{"grew for 2h, then stopped",
			`ballast_hopeless_parked_pods{job="sched",reason="taint"} 0+1x120 120x180`,
			map[time.Duration]bool{2*time.Hour + 30*time.Minute: false, 5 * time.Hour: false}},
		{"none parked",
			`ballast_hopeless_parked_pods{job="sched",reason="taint"} 0x300`,
			map[time.Duration]bool{5 * time.Hour: false}},
	},
	"BallastOwnerPileUp": {
		{"incident 8: one CronJob adds a hopeless pod every 10 minutes",
			`ballast_hopeless_owner_max_parked_pods{job="sched",owner_kind="CronJob",namespace="reports"} 0+0.1x600
			 ballast_hopeless_owner_parked_pods{job="sched",owner_kind="CronJob",namespace="reports"} 0+0.1x600`,
			map[time.Duration]bool{3 * time.Hour: false, 4 * time.Hour: false, 5 * time.Hour: true}},
		{"a large Deployment stuck at once, not growing",
			`ballast_hopeless_owner_max_parked_pods{job="sched",owner_kind="Deployment",namespace="web"} 500x600`,
			map[time.Duration]bool{10 * time.Hour: false}},
		{"the total grows, spread over many small owners",
			`ballast_hopeless_owner_parked_pods{job="sched",owner_kind="Job",namespace="ci"} 0+1x600
			 ballast_hopeless_owner_max_parked_pods{job="sched",owner_kind="Job",namespace="ci"} 3x600`,
			map[time.Duration]bool{10 * time.Hour: false}},
		{"bare pods piling up have no owner",
			`ballast_hopeless_owner_max_parked_pods{job="sched",owner_kind="none",namespace="default"} 1x600
			 ballast_hopeless_owner_parked_pods{job="sched",owner_kind="none",namespace="default"} 0+1x600`,
			map[time.Duration]bool{10 * time.Hour: false}},
		{"grew to 60 in an hour, then the CronJob was fixed: fires while it grows, not after",
			`ballast_hopeless_owner_max_parked_pods{job="sched",owner_kind="CronJob",namespace="reports"} 0+1x60 60x540`,
			map[time.Duration]bool{1*time.Hour + 30*time.Minute: true, 3 * time.Hour: false, 9 * time.Hour: false}},
		{"namespaces beyond the cap, summed as _other",
			`ballast_hopeless_owner_max_parked_pods{job="sched",owner_kind="CronJob",namespace="_other"} 0+0.5x300`,
			map[time.Duration]bool{30 * time.Minute: false, 2 * time.Hour: true}},
	},
	"BallastTemplatesUntrusted": {
		{"templates stale for an hour",
			`ballast_hopeless_templates_trusted{job="sched",instance="a"} 1x10 0x50`,
			map[time.Duration]bool{20 * time.Minute: false, 30 * time.Minute: true}},
		{"trusted", `ballast_hopeless_templates_trusted{job="sched",instance="a"} 1x60`, map[time.Duration]bool{60 * time.Minute: false}},
		{"the cluster does not autoscale", `ballast_hopeless_templates_trusted{job="sched",instance="a"} -1x60`, map[time.Duration]bool{60 * time.Minute: false}},
		{"a short gap", `ballast_hopeless_templates_trusted{job="sched",instance="a"} 1x20 0x10 1x30`, map[time.Duration]bool{30 * time.Minute: false, 60 * time.Minute: false}},
	},
	"BallastStatusWritesFailing": {
		{"half the writes fail",
			`ballast_hopeless_status_writes_total{job="sched",result="error"} 0+5x60
			 ballast_hopeless_status_writes_total{job="sched",result="ok"} 0+5x60`,
			map[time.Duration]bool{10 * time.Minute: false, 45 * time.Minute: true}},
		{"one write in a hundred fails",
			`ballast_hopeless_status_writes_total{job="sched",result="error"} 0+1x60
			 ballast_hopeless_status_writes_total{job="sched",result="ok"} 0+100x60`,
			map[time.Duration]bool{60 * time.Minute: false}},
		{"pods gone before their write (not an error)",
			`ballast_hopeless_status_writes_total{job="sched",result="gone"} 0+5x60
			 ballast_hopeless_status_writes_total{job="sched",result="ok"} 0+5x60`,
			map[time.Duration]bool{60 * time.Minute: false}},
	},
	"BallastAZBalancerLoopFailing": {
		{"every loop fails since minute 10",
			`ballast_az_balancer_reconciles_total{job="bal",result="error"} 0x10 1+2x50
			 ballast_az_balancer_reconciles_total{job="bal",result="success"} 0+2x10 20x50`,
			map[time.Duration]bool{15 * time.Minute: false, 35 * time.Minute: true}},
		{"no loop has ever succeeded",
			`ballast_az_balancer_reconciles_total{job="bal",result="error"} 0+2x60`,
			map[time.Duration]bool{30 * time.Minute: true}},
		{"some loops fail, others succeed",
			`ballast_az_balancer_reconciles_total{job="bal",result="error"} 0+1x60
			 ballast_az_balancer_reconciles_total{job="bal",result="success"} 0+1x60`,
			map[time.Duration]bool{60 * time.Minute: false}},
		{"healthy", `ballast_az_balancer_reconciles_total{job="bal",result="success"} 0+2x60`, map[time.Duration]bool{60 * time.Minute: false}},
	},
	"BallastHeldTerminationsAtRisk": {
		{"two instances held, loop stopped succeeding at minute 10",
			`ballast_az_balancer_held_terminations{job="bal"} 2x30
			 ballast_az_balancer_reconciles_total{job="bal",result="success"} 0+2x10 20x20`,
			map[time.Duration]bool{11 * time.Minute: false, 16 * time.Minute: true}},
		{"held, loop healthy",
			`ballast_az_balancer_held_terminations{job="bal"} 2x30
			 ballast_az_balancer_reconciles_total{job="bal",result="success"} 0+2x30`,
			map[time.Duration]bool{30 * time.Minute: false}},
		{"nothing held, loop stopped",
			`ballast_az_balancer_held_terminations{job="bal"} 0x30
			 ballast_az_balancer_reconciles_total{job="bal",result="success"} 0+2x10 20x20`,
			map[time.Duration]bool{30 * time.Minute: false}},
	},
	"BallastLifecycleHeartbeatsFailing": {
		{"heartbeats throttled",
			`ballast_aws_api_calls_total{job="bal",service="autoscaling",operation="RecordLifecycleActionHeartbeat",code="Throttling"} 0x5 1+1x25
			 ballast_aws_api_calls_total{job="bal",service="autoscaling",operation="RecordLifecycleActionHeartbeat",code="OK"} 0+2x30`,
			map[time.Duration]bool{5 * time.Minute: false, 15 * time.Minute: true}},
		{"heartbeats succeed, another call fails",
			`ballast_aws_api_calls_total{job="bal",service="autoscaling",operation="RecordLifecycleActionHeartbeat",code="OK"} 0+2x30
			 ballast_aws_api_calls_total{job="bal",service="ec2",operation="DescribeInstances",code="Throttling"} 0+1x30`,
			map[time.Duration]bool{30 * time.Minute: false}},
	},
	"BallastOrphanedVolumes": {
		{"three orphans for 90 minutes", `ballast_az_balancer_orphaned_volumes{job="bal"} 3x90`,
			map[time.Duration]bool{20 * time.Minute: false, 45 * time.Minute: true}},
		{"an orphan released after 10 minutes", `ballast_az_balancer_orphaned_volumes{job="bal"} 1x10 0x80`,
			map[time.Duration]bool{45 * time.Minute: false}},
		{"none", `ballast_az_balancer_orphaned_volumes{job="bal"} 0x90`, map[time.Duration]bool{90 * time.Minute: false}},
	},
}

// Every alert fires on the series it is about, and not on the ones it is not.
func TestAlertsOnSyntheticSeries(t *testing.T) {
	alerts := alertingRules(t)
	for name := range alerts {
		var fires, quiet bool
		for _, sc := range scenarios[name] {
			for _, f := range sc.firing {
				fires, quiet = fires || f, quiet || !f
			}
		}
		if !fires || !quiet {
			t.Errorf("%s: needs a scenario where it fires (%v) and one where it does not (%v)", name, fires, quiet)
		}
	}
	for name, scs := range scenarios {
		r, ok := alerts[name]
		if !ok {
			t.Errorf("scenarios for %s, which prometheusrule.yaml does not have", name)
			continue
		}
		for _, sc := range scs {
			t.Run(name+"/"+sc.name, func(t *testing.T) {
				got := evaluate(t, r, sc)
				for at, want := range sc.firing {
					if fired := len(got[at]) > 0; fired != want {
						t.Errorf("at %s: firing %v, want %v", at, fired, want)
					}
					for _, a := range got[at] {
						if a.Labels.Get("severity") == "" {
							t.Errorf("at %s: alert without severity: %s", at, a.Labels)
						}
						a.Annotations.Range(func(l labels.Label) {
							if strings.Contains(l.Value, "error expanding template") || strings.Contains(l.Value, "<no value>") {
								t.Errorf("annotation %s: %s", l.Name, l.Value)
							}
						})
					}
				}
			})
		}
	}
}

// Every query of the Grafana dashboard is PromQL that Prometheus parses,
// with Grafana's variables set as Grafana sets them.
func TestDashboardQueriesParse(t *testing.T) {
	data, err := os.ReadFile("../grafana/ballast.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string
		Panels []struct {
			Title   string
			Type    string
			Targets []struct{ Expr string }
		}
		Templating struct{ List []struct{ Name string } }
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	var vars []string
	for _, v := range dash.Templating.List {
		vars = append(vars, v.Name)
	}
	variable := regexp.MustCompile(`\$\{?(\w+)\}?`)
	n := 0
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			q := variable.ReplaceAllStringFunc(tg.Expr, func(s string) string {
				name := variable.FindStringSubmatch(s)[1]
				switch {
				case name == "__rate_interval":
					return "5m"
				case slices.Contains(vars, name):
					return ".+"
				}
				t.Errorf("panel %q: unknown variable %s", p.Title, s)
				return s
			})
			if _, err := promQL.ParseExpr(q); err != nil {
				t.Errorf("panel %q: %q: %v", p.Title, q, err)
			}
			n++
		}
	}
	if n < 10 || dash.UID == "" {
		t.Fatalf("dashboard uid %q with %d queries", dash.UID, n)
	}
}
