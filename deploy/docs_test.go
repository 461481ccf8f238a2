package deploy_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/ballast-k8s/ballast/config/nodegroups"
)

// nodeGroupsDocYAML is the ConfigMap example of docs/node-groups.md: the
// fenced yaml block that holds `kind: ConfigMap`.
func nodeGroupsDocYAML(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/node-groups.md")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, m := range regexp.MustCompile("(?ms)^```yaml\n(.*?)^```").FindAllStringSubmatch(string(doc), -1) {
		if strings.Contains(m[1], "\nkind: ConfigMap\n") {
			found = append(found, m[1])
		}
	}
	if len(found) != 1 {
		t.Fatalf("docs/node-groups.md has %d yaml blocks of kind ConfigMap, want 1", len(found))
	}
	return found[0]
}

func nodeGroupsDocConfigMap(t *testing.T) *v1.ConfigMap {
	t.Helper()
	cm := &v1.ConfigMap{}
	if err := yaml.UnmarshalStrict([]byte(nodeGroupsDocYAML(t)), cm); err != nil {
		t.Fatalf("docs/node-groups.md: %v", err)
	}
	return cm
}

// The example of docs/node-groups.md is what the scheduler plugin accepts.
func TestNodeGroupsDocExample(t *testing.T) {
	cm := nodeGroupsDocConfigMap(t)
	if cm.Namespace != nodegroups.DefaultNamespace || cm.Name != nodegroups.DefaultName {
		t.Errorf("example is %s/%s, want the default %s/%s", cm.Namespace, cm.Name, nodegroups.DefaultNamespace, nodegroups.DefaultName)
	}
	list, err := nodegroups.Decode(cm.Data)
	if err != nil {
		t.Fatalf("nodegroups.Decode of the example: %v", err)
	}
	if len(list.NodeGroups) < 2 {
		t.Fatalf("example has %d node groups, want several", len(list.NodeGroups))
	}
	// The example shows every field of a group at least once.
	var zone, labels, taints, types, variants, growable, full bool
	for _, g := range list.NodeGroups {
		zone = zone || g.Zone != ""
		labels = labels || len(g.Labels) > 0
		taints = taints || len(g.Taints) > 0
		types = types || len(g.InstanceTypes) > 0
		variants = variants || len(g.Variants) > 0
		growable = growable || g.CanGrow()
		full = full || !g.CanGrow()
	}
	if !zone || !labels || !taints || !types || !variants || !growable || !full {
		t.Errorf("example lacks a zone (%v), labels (%v), taints (%v), instanceTypes (%v), variants (%v), a group that can grow (%v) or one at max size (%v)",
			zone, labels, taints, types, variants, growable, full)
	}
}

// docs/operations.md names every metric and event reason the programs emit.
func TestOperationsDocIsComplete(t *testing.T) {
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	want = append(want, hopelessMetrics(t)...)
	want = append(want, collectorNames(t)...)
	want = append(want, balancerEventReasons(t)...)
	want = append(want, "Hopeless", "InvalidNodeGroups", "hopeless: ",
		"ballast.k8s.io/protected-by", "ballast.k8s.io/scale-in-protected-by", "cluster-autoscaler.kubernetes.io/scale-down-disabled")
	for _, w := range want {
		if !strings.Contains(string(doc), w) {
			t.Errorf("docs/operations.md does not mention %q", w)
		}
	}
}

// hopelessMetrics reads the metric names of plugins/hopeless/metrics.go.
func hopelessMetrics(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile("../plugins/hopeless/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	sub := regexp.MustCompile(`const subsystem = "(\w+)"`).FindSubmatch(src)
	names := regexp.MustCompile(`\bName:\s+"(\w+)"`).FindAllSubmatch(src, -1)
	if sub == nil || len(names) < 6 {
		t.Fatalf("found subsystem %q and %d names in plugins/hopeless/metrics.go: the pattern is out of date", sub, len(names))
	}
	var out []string
	for _, n := range names {
		out = append(out, string(sub[1])+"_"+string(n[1]))
	}
	return out
}

// balancerEventReasons reads the Reason* constants of internal/balancer.
func balancerEventReasons(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../internal/balancer/events.go", nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range vs.Names {
			if !strings.HasPrefix(name.Name, "Reason") || i >= len(vs.Values) {
				continue
			}
			if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				v, _ := strconv.Unquote(lit.Value)
				out = append(out, v)
			}
		}
		return true
	})
	if len(out) < 5 {
		t.Fatalf("found event reasons %v in internal/balancer/events.go: the parser is out of date", out)
	}
	return out
}
