package deploy_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	testutils "k8s.io/kubernetes/test/integration/util"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// The scraper of deploy/monitoring/rbac.yaml (kube-prometheus' default).
const scraperNamespace, scraperName = "monitoring", "prometheus-k8s"

// manifests reads the YAML documents of a file of deploy/monitoring.
func manifests(t *testing.T, file string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		o := &unstructured.Unstructured{}
		if err := dec.Decode(&o.Object); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(o.Object) > 0 {
			out = append(out, o)
		}
	}
	return out
}

// promQLNames returns the metric names a PromQL expression selects: what is
// left once strings, label matchers, ranges, grouping lists, functions,
// keywords, numbers and durations are taken out.
func promQLNames(expr string) []string {
	for _, re := range []string{
		`"(?:[^"\\]|\\.)*"`, `'(?:[^'\\]|\\.)*'`, `\{[^}]*\}`, `\[[^\]]*\]`,
		`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`,
		`\$\{?\w+\}?`, // Grafana variables
		`\b[a-zA-Z_:][a-zA-Z0-9_:]*\s*\(`,
		`\b\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y)?\b`,
	} {
		expr = regexp.MustCompile(re).ReplaceAllString(expr, " ")
	}
	keywords := map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
		"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true}
	var out []string
	for _, id := range regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`).FindAllString(expr, -1) {
		if !keywords[strings.ToLower(id)] && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// dashboardQueries returns the expressions of every panel of the dashboard,
// and of its variables.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("monitoring/grafana/ballast.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name, Type string
				Query      json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("ballast.json: %v", err)
	}
	out := map[string]string{}
	for _, p := range dash.Panels {
		for i, tg := range p.Targets {
			out[fmt.Sprintf("panel %q target %d", p.Title, i)] = tg.Expr
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		// label_values(metric, label)
		m := regexp.MustCompile(`^label_values\(([^,]+),`).FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("variable %s: query %q is not label_values(metric, label)", v.Name, q.Query)
		}
		out["variable "+v.Name] = m[1]
	}
	if len(out) < 10 {
		t.Fatalf("found %d queries in the dashboard", len(out))
	}
	return out
}

// ruleExpressions returns the expressions of the PrometheusRule.
func ruleExpressions(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, o := range manifests(t, "monitoring/prometheusrule.yaml") {
		groups, _, _ := unstructured.NestedSlice(o.Object, "spec", "groups")
		for _, g := range groups {
			rules, _ := g.(map[string]any)["rules"].([]any)
			for _, r := range rules {
				r := r.(map[string]any)
				out[fmt.Sprint("alert ", r["alert"], r["record"])] = fmt.Sprint(r["expr"])
			}
		}
	}
	if len(out) < 6 {
		t.Fatalf("found %d rules in prometheusrule.yaml", len(out))
	}
	return out
}

// exposed are the metric names in a Prometheus text exposition, with the
// series names of histograms and summaries.
func exposed(body string) map[string]bool {
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) (\S+)$`).FindAllStringSubmatch(body, -1) {
		out[m[1]] = true
		if m[2] == "histogram" || m[2] == "summary" {
			out[m[1]+"_sum"], out[m[1]+"_count"] = true, true
			if m[2] == "histogram" {
				out[m[1]+"_bucket"] = true
			}
		}
	}
	return out
}

func TestPromQLNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (reason) (ballast_hopeless_parked_pods{job=~"$scheduler_job"})`:           {"ballast_hopeless_parked_pods"},
		`histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="b"}[$__rate_interval])))`: {"x_bucket"},
		"a > 0\nand\nsum by (job) (delta(b[1h])) > 0.1 unless on (job) c offset 5m":       {"a", "b", "c"},
		`max(up{job="by (x)"}) == bool 1`:                                                 {"up"},
	} {
		if got := promQLNames(expr); !slices.Equal(got, want) {
			t.Errorf("promQLNames(%q) = %q, want %q", expr, got, want)
		}
	}
}

// The shipped RBAC and monitors fit what deploy/ runs: the ServiceMonitor
// selects the scheduler's metrics Service and port, the PodMonitor the
// az-balancer's pod and port, and the ClusterRole grants exactly get on /metrics.
func TestMonitoringManifests(t *testing.T) {
	role := &rbacv1.ClusterRole{}
	binding := &rbacv1.ClusterRoleBinding{}
	for _, o := range manifests(t, "monitoring/rbac.yaml") {
		switch o.GetKind() {
		case "ClusterRole":
			role = convert[rbacv1.ClusterRole](t, o)
		case "ClusterRoleBinding":
			binding = convert[rbacv1.ClusterRoleBinding](t, o)
		default:
			t.Errorf("rbac.yaml: unexpected %s", o.GetKind())
		}
	}
	want := []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}
	if !slices.EqualFunc(role.Rules, want, func(a, b rbacv1.PolicyRule) bool {
		return slices.Equal(a.NonResourceURLs, b.NonResourceURLs) && slices.Equal(a.Verbs, b.Verbs) && len(a.Resources) == 0
	}) {
		t.Errorf("ClusterRole rules %+v, want get on /metrics only", role.Rules)
	}
	if binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 || binding.Subjects[0].Name != scraperName || binding.Subjects[0].Namespace != scraperNamespace {
		t.Errorf("ClusterRoleBinding %+v does not bind %s to %s/%s", binding, role.Name, scraperNamespace, scraperName)
	}

	secondary := render(t, "scheduler-secondary")
	svc := convert[v1.Service](t, find(t, secondary, "Service", ""))
	sidecar := render(t, "az-balancer")
	for _, o := range manifests(t, "monitoring/monitors.yaml") {
		switch o.GetKind() {
		case "ServiceMonitor":
			sel, _, _ := unstructured.NestedStringMap(o.Object, "spec", "selector", "matchLabels")
			if !selects(sel, svc.Labels) {
				t.Errorf("ServiceMonitor selects %v; the Service %s has labels %v", sel, svc.Name, svc.Labels)
			}
			eps, _, _ := unstructured.NestedSlice(o.Object, "spec", "endpoints")
			if len(eps) != 1 {
				t.Fatalf("ServiceMonitor has %d endpoints", len(eps))
			}
			ep := eps[0].(map[string]any)
			if !slices.ContainsFunc(svc.Spec.Ports, func(p v1.ServicePort) bool { return p.Name == ep["port"] }) || ep["scheme"] != "https" || ep["bearerTokenFile"] == nil {
				t.Errorf("ServiceMonitor endpoint %v: want the Service's port over https with the service-account token", ep)
			}
		case "PodMonitor":
			sel, _, _ := unstructured.NestedStringMap(o.Object, "spec", "selector", "matchLabels")
			eps, _, _ := unstructured.NestedSlice(o.Object, "spec", "podMetricsEndpoints")
			d := convert[appsv1.Deployment](t, find(t, sidecar, "Deployment", "cluster-autoscaler"))
			if !selects(sel, d.Spec.Template.Labels) {
				t.Errorf("PodMonitor selects %v; cluster-autoscaler's pods have labels %v", sel, d.Spec.Template.Labels)
			}
			c := container(t, &d.Spec.Template.Spec, "az-balancer")
			if len(eps) != 1 || !slices.ContainsFunc(c.Ports, func(p v1.ContainerPort) bool { return p.Name == eps[0].(map[string]any)["port"] }) {
				t.Errorf("PodMonitor endpoints %v: want az-balancer's metrics port (%v)", eps, c.Ports)
			}
			if !slices.Contains(c.Args, "--metrics-bind-address=:8080") {
				t.Errorf("az-balancer args %v: the PodMonitor expects metrics on :8080", c.Args)
			}
		default:
			t.Errorf("monitors.yaml: unexpected %s", o.GetKind())
		}
	}
}

// The scraper's service account, bound by deploy/monitoring/rbac.yaml, reads
// /metrics of the scheduler as deployed (secure port, delegated authn/authz,
// the scheduler-secondary RBAC alone); another service account and an
// anonymous request are refused. The scrape, with a parked pod, and
// az-balancer's registry are then the metrics every dashboard query and
// every alert must name.
func TestMetricsScrapeAsPrometheus(t *testing.T) {
	server := testutils.InitTestAPIServer(t, "monitoring", nil)
	ctx, cs := server.Ctx, server.ClientSet
	dyn, mapper := dynamicClient(t, server)

	objs := render(t, "scheduler-secondary")
	applyRBAC(ctx, t, dyn, mapper, objs)
	for _, o := range manifests(t, "monitoring/rbac.yaml") {
		apply(ctx, t, dyn, mapper, o, false)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: scraperNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{scraperName, "someone-else"} {
		if _, err := cs.CoreV1().ServiceAccounts(scraperNamespace).Create(ctx, &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// What the apiserver answers for the scraper, as the scheduler will ask it.
	review := func(user string) bool {
		r, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + scraperNamespace, "system:authenticated"},
			NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: "/metrics", Verb: "get"},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status.Allowed
	}
	if !review("system:serviceaccount:" + scraperNamespace + ":" + scraperName) {
		t.Errorf("SubjectAccessReview: %s/%s may not get /metrics", scraperNamespace, scraperName)
	}
	if review("system:serviceaccount:" + scraperNamespace + ":someone-else") {
		t.Errorf("SubjectAccessReview: any service account may get /metrics; the test proves nothing")
	}

	port := runDeployedScheduler(ctx, t, cs, server.KubeConfig, objs)
	cm := convert[v1.ConfigMap](t, find(t, objs, "ConfigMap", ""))
	var doc struct {
		Profiles []struct{ SchedulerName string }
	}
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &doc); err != nil || len(doc.Profiles) != 1 {
		t.Fatalf("profiles of the shipped config: %v %v", doc.Profiles, err)
	}
	// A bound pod and a parked one, so that the vectors have series.
	schedulesWithDeployedRBAC(ctx, t, cs, doc.Profiles[0].SchedulerName)

	token := func(sa string) string {
		tr, err := cs.CoreV1().ServiceAccounts(scraperNamespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("token of %s: %v", sa, err)
		}
		return tr.Status.Token
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the scheduler's self-signed serving cert, as the ServiceMonitor says
	scrape := func(tok string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/metrics", port), nil)
		if err != nil {
			return 0, "", err
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}

	var body string
	scraper := token(scraperName)
	waitFor(ctx, t, "the scraper's GET /metrics to return the parked pod", func() (bool, error) {
		code, b, err := scrape(scraper)
		if err != nil || code != http.StatusOK {
			return false, nil
		}
		body = b
		return regexp.MustCompile(`(?m)^ballast_hopeless_parked_pods\{reason="[\w-]+"\} 1$`).MatchString(b), nil
	})
	for who, tok := range map[string]string{"service account someone-else": token("someone-else"), "an anonymous request": ""} {
		code, _, err := scrape(tok)
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusForbidden && code != http.StatusUnauthorized {
			t.Errorf("GET /metrics as %s: %d, want 401 or 403", who, code)
		}
	}

	names := exposed(body)
	for _, n := range collectorNames(t) { // az-balancer's registry
		names[n] = true
	}
	for _, h := range []string{"ballast_az_balancer_reconcile_duration_seconds"} {
		names[h+"_bucket"], names[h+"_sum"], names[h+"_count"] = true, true, true
	}
	for _, n := range []string{"ballast_hopeless_parked_pods", "ballast_hopeless_verdicts_total", "ballast_hopeless_status_writes_total",
		"ballast_hopeless_templates_trusted", "ballast_hopeless_verdict_duration_seconds_bucket", "scheduler_pending_pods"} {
		if !names[n] {
			t.Errorf("the scheduler's /metrics has no %s", n)
		}
	}
	check := func(what string, queries map[string]string) {
		for where, q := range queries {
			ns := promQLNames(q)
			if len(ns) == 0 {
				t.Errorf("%s %s: no metric in %q", what, where, q)
			}
			for _, n := range ns {
				if !names[n] {
					t.Errorf("%s %s: %s is exported by neither program (%q)", what, where, n, q)
				}
			}
		}
	}
	check("dashboard", dashboardQueries(t))
	check("rule", ruleExpressions(t))
}
