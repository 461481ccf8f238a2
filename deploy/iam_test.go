package deploy_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const awsPackageDir = "../internal/aws"

// awsInterfaceActions returns "service:Operation" for every method of the
// interfaces in internal/aws that take an SDK operation input
// (*autoscaling.XInput, *ec2.XInput), and for every embedded SDK paginator
// client interface (autoscaling.XAPIClient): the calls the balancer can make.
func awsInterfaceActions(t *testing.T) []string {
	t.Helper()
	files := parseAWSPackage(t)
	set := map[string]bool{}
	for _, f := range files {
		services := sdkImports(f)
		ast.Inspect(f, func(n ast.Node) bool {
			it, ok := n.(*ast.InterfaceType)
			if !ok {
				return true
			}
			for _, m := range it.Methods.List {
				switch typ := m.Type.(type) {
				case *ast.SelectorExpr: // embedded interface, e.g. ec2.DescribeInstancesAPIClient
					if svc, ok := services[pkgName(typ.X)]; ok {
						if op, ok := strings.CutSuffix(typ.Sel.Name, "APIClient"); ok {
							set[svc+":"+op] = true
						}
					}
				case *ast.FuncType:
					for _, p := range typ.Params.List {
						star, ok := p.Type.(*ast.StarExpr)
						if !ok {
							continue
						}
						sel, ok := star.X.(*ast.SelectorExpr)
						if !ok {
							continue
						}
						if svc, ok := services[pkgName(sel.X)]; ok {
							if op, ok := strings.CutSuffix(sel.Sel.Name, "Input"); ok {
								set[svc+":"+op] = true
							}
						}
					}
				}
			}
			return true
		})
	}
	return sortedKeys(set)
}

// awsCalledActions finds the calls internal/aws makes on its SDK clients:
// c.asg.Op(ctx, ...), c.ec2.Op(ctx, ...), and paginators svc.NewOpPaginator(c.asg, ...).
func awsCalledActions(t *testing.T) []string {
	t.Helper()
	fields := map[string]string{"asg": "autoscaling", "ec2": "ec2"}
	direct := regexp.MustCompile(`\bc\.(asg|ec2)\.(\w+)\(ctx\b`)
	paged := regexp.MustCompile(`\b(autoscaling|ec2)\.New(\w+)Paginator\(c\.(asg|ec2)\b`)
	set := map[string]bool{}
	for _, f := range goFiles(t) {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range direct.FindAllStringSubmatch(string(src), -1) {
			set[fields[m[1]]+":"+m[2]] = true
		}
		for _, m := range paged.FindAllStringSubmatch(string(src), -1) {
			set[m[1]+":"+m[2]] = true
		}
	}
	return sortedKeys(set)
}

type iamPolicy struct {
	Version   string
	Statement []struct {
		Sid       string
		Effect    string
		Action    []string
		Resource  any
		Condition map[string]map[string]any
	}
}

// iam-policy.json allows exactly the AWS operations the balancer calls: a
// missing one fails in production with AccessDenied, an extra one is a
// permission nobody uses.
func TestIAMPolicyMatchesAWSCalls(t *testing.T) {
	declared := awsInterfaceActions(t)
	called := awsCalledActions(t)
	for _, svc := range []string{"autoscaling:", "ec2:"} {
		if !slices.ContainsFunc(declared, func(a string) bool { return strings.HasPrefix(a, svc) }) {
			t.Fatalf("found no %s operations in %s (found %v): the parser is out of date", svc, awsPackageDir, declared)
		}
	}
	if diff := cmp.Diff(declared, called); diff != "" {
		t.Errorf("operations of the SDK interfaces (-) vs operations called by the client (+):\n%s", diff)
	}

	data, err := os.ReadFile("az-balancer/iam-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var p iamPolicy
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("iam-policy.json: %v", err)
	}
	if p.Version != "2012-10-17" {
		t.Errorf("Version = %q, want 2012-10-17 (the older version has no policy variables)", p.Version)
	}
	granted := map[string]bool{}
	for i, s := range p.Statement {
		if s.Effect != "Allow" {
			t.Errorf("statement %d (%s): Effect %q, want Allow", i, s.Sid, s.Effect)
		}
		for _, a := range s.Action {
			if strings.ContainsAny(a, "*?") {
				t.Errorf("statement %d (%s): wildcard action %q", i, s.Sid, a)
			}
			if granted[a] {
				t.Errorf("action %s is granted twice", a)
			}
			granted[a] = true
		}
	}
	want := map[string]bool{}
	for _, a := range declared {
		want[a] = true
		for _, d := range dependentActions[a] {
			want[d] = true
		}
	}
	if diff := cmp.Diff(sortedKeys(want), sortedKeys(granted)); diff != "" {
		t.Errorf("operations the balancer calls and the actions AWS checks on their behalf (-want) vs actions iam-policy.json grants (+got):\n%s", diff)
	}
}

// dependentActions are what AWS authorizes, besides the operation itself,
// when the balancer makes it the way it does (Amazon EC2 Auto Scaling User
// Guide, "Amazon EC2 Auto Scaling API permissions"). CreateAutoScalingGroup
// with a launch template checks ec2:RunInstances, ec2:CreateTags when the
// template tags instances, and iam:PassRole when it names an instance
// profile (or the source group a non-default service-linked role).
var dependentActions = map[string][]string{
	"autoscaling:CreateAutoScalingGroup": {"ec2:RunInstances", "ec2:CreateTags", "iam:PassRole"},
}

func goFiles(t *testing.T) []string {
	t.Helper()
	all, err := filepath.Glob(filepath.Join(awsPackageDir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range all {
		if !strings.HasSuffix(f, "_test.go") {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no Go files in %s", awsPackageDir)
	}
	return out
}

func parseAWSPackage(t *testing.T) []*ast.File {
	t.Helper()
	fset := token.NewFileSet()
	var out []*ast.File
	for _, f := range goFiles(t) {
		af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, af)
	}
	return out
}

// sdkImports maps the local names of the AWS SDK service packages a file
// imports to their IAM service prefix.
func sdkImports(f *ast.File) map[string]string {
	const prefix = "github.com/aws/aws-sdk-go-v2/service/"
	out := map[string]string{}
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		svc, ok := strings.CutPrefix(path, prefix)
		if !ok || strings.Contains(svc, "/") {
			continue // not a service client package (e.g. .../autoscaling/types)
		}
		name := svc
		if imp.Name != nil {
			name = imp.Name.Name
		}
		out[name] = svc
	}
	return out
}

func pkgName(e ast.Expr) string {
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
