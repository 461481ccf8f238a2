package balancer

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestUnknownInstanceTypeSpoilsNoOtherTemplate is defect 7 of issue 11: one
// group whose instance type EC2 does not know (DescribeInstanceTypes then
// fails whole, InvalidInstanceType) keeps no other group from its template.
// The groups that can be described are published; the other is reported.
func TestUnknownInstanceTypeSpoilsNoOtherTemplate(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.emu.CreateGroup(awstest.GroupSpec{Name: "web", Zones: zones[:1], MaxSize: 3, InstanceType: "m5.large", Tags: caTags(nil)})
	f.emu.CreateGroup(awstest.GroupSpec{Name: "db", Zones: zones[:1], MaxSize: 3, InstanceType: "i3.xlarge", Tags: caTags(nil)})
	f.emu.CreateGroup(awstest.GroupSpec{Name: "typo", Zones: zones[:1], MaxSize: 3, InstanceType: "m9.mythical", Tags: caTags(nil)})
	err := f.b.Reconcile(ctx)
	cm, gerr := f.kube.CoreV1().ConfigMaps(nodegroups.DefaultNamespace).Get(ctx, nodegroups.DefaultName, metav1.GetOptions{})
	if gerr != nil {
		t.Fatalf("no ConfigMap published (loop error %v): %v", err, gerr)
	}
	list, derr := nodegroups.Decode(cm.Data)
	if derr != nil {
		t.Fatal(derr)
	}
	var names []string
	for _, g := range list.NodeGroups {
		names = append(names, g.Name)
	}
	if strings.Join(names, ",") != "db,web" {
		t.Errorf("published groups %v, want db and web", names)
	}
	close(f.events.Events)
	reported := false
	for e := range f.events.Events {
		reported = reported || (strings.Contains(e, ReasonTemplateIncomplete) && strings.Contains(e, "typo") && strings.Contains(e, "m9.mythical"))
	}
	if !reported {
		t.Error("the group with the unknown type is not reported")
	}
}
