package deploy_test

import (
	"encoding/json"
	"fmt"
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

const awsPackageDir = "../internal/asg"

// awsInterfaceActions returns "service:Operation" for every method of the
// interfaces in internal/asg that take an SDK operation input
// (*autoscaling.XInput, *ec2.XInput), and for every embedded SDK paginator
// client interface (autoscaling.XAPIClient): the calls the balancer can make.
func awsInterfaceActions(t *testing.T) []string {
	t.Helper()
	return sortedKeys(awsActionsByInterface(t, func(string) bool { return true }))
}

// awsActionsByInterface is awsInterfaceActions of the interfaces whose name keep accepts.
func awsActionsByInterface(t *testing.T, keep func(iface string) bool) map[string]bool {
	t.Helper()
	files := parseAWSPackage(t)
	set := map[string]bool{}
	for _, f := range files {
		services := sdkImports(f)
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			it, ok := ts.Type.(*ast.InterfaceType)
			if !ok || !keep(ts.Name.Name) {
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
	return set
}

// isSplit tells the interfaces of split.go (splitAutoScalingAPI, splitEC2API),
// whose calls only `split` and `run --enforce=split` make, from the others.
func isSplit(iface string) bool { return strings.HasPrefix(iface, "split") }

// awsCalledActions finds the calls internal/asg makes on its SDK clients:
// c.asg.Op(ctx, ...), c.ec2.Op(ctx, ...), and paginators svc.NewOpPaginator(c.asg, ...).
func awsCalledActions(t *testing.T) []string {
	t.Helper()
	fields := map[string]string{"asg": "autoscaling", "ec2": "ec2", "eks": "eks"}
	direct := regexp.MustCompile(`\bc\.(asg|ec2|eks)\.(\w+)\(ctx\b`)
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
	for _, svc := range []string{"autoscaling:", "ec2:", "eks:"} {
		if !slices.ContainsFunc(declared, func(a string) bool { return strings.HasPrefix(a, svc) }) {
			t.Fatalf("found no %s operations in %s (found %v): the parser is out of date", svc, awsPackageDir, declared)
		}
	}
	if diff := cmp.Diff(declared, called); diff != "" {
		t.Errorf("operations of the SDK interfaces (-) vs operations called by the client (+):\n%s", diff)
	}

	base := awsActionsByInterface(t, func(i string) bool { return !isSplit(i) })
	split := awsActionsByInterface(t, isSplit)
	if len(split) == 0 {
		t.Fatalf("found no split interfaces in %s: the parser is out of date", awsPackageDir)
	}
	for _, tc := range []struct {
		file string
		want map[string]bool
	}{
		{"az-balancer/iam-policy.json", withDependents(base)},
		{"az-balancer/iam-policy-split.json", withDependents(split)},
	} {
		p := readPolicy(t, tc.file)
		granted := map[string]bool{}
		for i, s := range p.Statement {
			for _, a := range s.Action {
				if strings.ContainsAny(a, "*?") {
					t.Errorf("%s statement %d (%s): wildcard action %q", tc.file, i, s.Sid, a)
				}
				if granted[a] {
					t.Errorf("%s: action %s is granted twice", tc.file, a)
				}
				granted[a] = true
			}
		}
		if diff := cmp.Diff(sortedKeys(tc.want), sortedKeys(granted)); diff != "" {
			t.Errorf("operations the balancer calls and the actions AWS checks on their behalf (-want) vs actions %s grants (+got):\n%s", tc.file, diff)
		}
	}
}

func withDependents(actions map[string]bool) map[string]bool {
	out := map[string]bool{}
	for a := range actions {
		out[a] = true
		for _, d := range dependentActions[a] {
			out[d] = true
		}
	}
	return out
}

func readPolicy(t *testing.T, file string) iamPolicy {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var p iamPolicy
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if p.Version != "2012-10-17" {
		t.Errorf("%s: Version = %q, want 2012-10-17 (the older version has no policy variables)", file, p.Version)
	}
	for i, s := range p.Statement {
		if s.Effect != "Allow" {
			t.Errorf("%s statement %d (%s): Effect %q, want Allow", file, i, s.Sid, s.Effect)
		}
	}
	return p
}

// Least privilege, as the Service Authorization Reference ("Actions defined
// by Amazon EC2 Auto Scaling", "... Amazon EC2", "... IAM") allows it:
//   - Describe* and ec2:DescribeSubnets support no resource-level
//     permissions: they alone may be on "*". eks:DescribeNodegroup is the
//     exception: it takes the nodegroup resource ("Actions defined by
//     Amazon Elastic Kubernetes Service"), limited to the node groups of
//     one EKS cluster (EKS_CLUSTER_NAME).
//   - The Auto Scaling write actions take the autoScalingGroup resource and
//     the aws:ResourceTag/${TagKey} condition key: each is limited to the
//     groups that carry this cluster's tag key (CLUSTER_NAME, replaced by the
//     operator) and k8s.io/cluster-autoscaler/enabled=true, which is what
//     the balancer's discovery manages (asg.AutoDiscovery). The heartbeat
//     and completion of a held termination need the cluster's tag only: a
//     termination held before its group left discovery (enabled changed)
//     is still heartbeated, or the hook's CONTINUE terminates the instance.
//   - CreateAutoScalingGroup has no existing resource to carry a tag: it is
//     limited by aws:RequestTag to groups created with those tags.
//   - ec2:EnableImageDeregistrationProtection and its Disable are limited
//     to image resources (arn:aws:ec2:*::image/*).
//   - ec2:RunInstances, checked on the launch template when a group is
//     created from one, is limited to launch-template resources;
//     ec2:CreateTags to tagging at launch (ec2:CreateAction); iam:PassRole
//     to the node role (NODE_ROLE_NAME), passed to EC2.
func TestIAMPoliciesLeastPrivilege(t *testing.T) {
	const eksNodegroupARN = "arn:aws:eks:*:*:nodegroup/EKS_CLUSTER_NAME/*/*"
	const groupARN = "arn:aws:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/*"
	const clusterKey = "k8s.io/cluster-autoscaler/CLUSTER_NAME"
	for _, file := range []string{"az-balancer/iam-policy.json", "az-balancer/iam-policy-split.json"} {
		p := readPolicy(t, file)
		for i, s := range p.Statement {
			where := fmt.Sprintf("%s statement %d (%s)", file, i, s.Sid)
			resources := resourcesOf(s.Resource)
			describe := true
			for _, a := range s.Action {
				_, op, _ := strings.Cut(a, ":")
				describe = describe && strings.HasPrefix(op, "Describe")
			}
			for _, a := range s.Action {
				// eks:DescribeNodegroup takes the nodegroup resource
				// (arn:${Partition}:eks:${Region}:${Account}:nodegroup/${ClusterName}/${NodegroupName}/${UUID}):
				// it is limited to this cluster's node groups.
				if a == "eks:DescribeNodegroup" && !slices.Equal(resources, []string{eksNodegroupARN}) {
					t.Errorf("%s: %s on %v, want %s", where, a, resources, eksNodegroupARN)
				}
			}
			if describe {
				continue // no resource-level permissions exist for the others
			}
			if slices.Contains(resources, "*") {
				t.Errorf("%s: %v on Resource \"*\"", where, s.Action)
			}
			for _, a := range s.Action {
				svc, op, _ := strings.Cut(a, ":")
				switch {
				case svc == "autoscaling" && op == "CreateAutoScalingGroup":
					checkTagCondition(t, where, s.Condition, "aws:RequestTag/", clusterKey)
					if !slices.Equal(resources, []string{groupARN}) {
						t.Errorf("%s: %s on %v, want %s", where, a, resources, groupARN)
					}
				case svc == "autoscaling" && (op == "RecordLifecycleActionHeartbeat" || op == "CompleteLifecycleAction"):
					if s.Condition["Null"]["aws:ResourceTag/"+clusterKey] != "false" {
						t.Errorf("%s: no condition that aws:ResourceTag/%s is present (Null: false): %v", where, clusterKey, s.Condition)
					}
					if _, ok := s.Condition["StringEquals"]["aws:ResourceTag/k8s.io/cluster-autoscaler/enabled"]; ok {
						t.Errorf("%s: %s is conditioned on the enabled tag: a termination held before its group left discovery could no longer be heartbeated", where, a)
					}
					if !slices.Equal(resources, []string{groupARN}) {
						t.Errorf("%s: %s on %v, want %s", where, a, resources, groupARN)
					}
				case svc == "autoscaling":
					checkTagCondition(t, where, s.Condition, "aws:ResourceTag/", clusterKey)
					if !slices.Equal(resources, []string{groupARN}) {
						t.Errorf("%s: %s on %v, want %s", where, a, resources, groupARN)
					}
				case a == "ec2:RunInstances":
					if !slices.Equal(resources, []string{"arn:aws:ec2:*:*:launch-template/*"}) {
						t.Errorf("%s: %s on %v, want launch templates only", where, a, resources)
					}
				case a == "ec2:EnableImageDeregistrationProtection" || a == "ec2:DisableImageDeregistrationProtection":
					// Images carry no cluster tag to condition on; the
					// split protects the AMIs of its batch only while it
					// is detached, and only those the account owns.
					if !slices.Equal(resources, []string{"arn:aws:ec2:*::image/*"}) {
						t.Errorf("%s: %s on %v, want images only", where, a, resources)
					}
				case a == "ec2:CreateTags":
					if s.Condition["StringEquals"]["ec2:CreateAction"] != "RunInstances" {
						t.Errorf("%s: %s without the ec2:CreateAction=RunInstances condition", where, a)
					}
				case a == "iam:PassRole":
					if !slices.Equal(resources, []string{"arn:aws:iam::*:role/NODE_ROLE_NAME"}) || s.Condition["StringEquals"]["iam:PassedToService"] != "ec2.amazonaws.com" {
						t.Errorf("%s: %s on %v with %v, want the node role passed to ec2.amazonaws.com", where, a, resources, s.Condition)
					}
				default:
					t.Errorf("%s: no least-privilege rule for %s", where, a)
				}
			}
		}
	}
}

// checkTagCondition wants the cluster's tag key present and enabled=true, under prefix.
func checkTagCondition(t *testing.T, where string, cond map[string]map[string]any, prefix, clusterKey string) {
	t.Helper()
	if cond["Null"][prefix+clusterKey] != "false" {
		t.Errorf("%s: no condition that %s%s is present (Null: false): %v", where, prefix, clusterKey, cond)
	}
	if cond["StringEquals"][prefix+"k8s.io/cluster-autoscaler/enabled"] != "true" {
		t.Errorf("%s: no condition %sk8s.io/cluster-autoscaler/enabled = true: %v", where, prefix, cond)
	}
}

func resourcesOf(r any) []string {
	switch r := r.(type) {
	case string:
		return []string{r}
	case []any:
		var out []string
		for _, x := range r {
			s, _ := x.(string)
			out = append(out, s)
		}
		slices.Sort(out)
		return out
	}
	return nil
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
