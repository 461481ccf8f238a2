package v1alpha1

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

func unknown(raw string) *runtime.Unknown {
	return &runtime.Unknown{Raw: []byte(raw), ContentType: runtime.ContentTypeJSON}
}

func TestDecodeDefaults(t *testing.T) {
	got, err := DecodeHopelessPodsArgs(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &HopelessPodsArgs{
		Autoscaling:           ptr.To(false),
		NodeGroupsConfigMap:   &ConfigMapRef{Namespace: "kube-system", Name: "ballast-node-groups"},
		MaxTemplateAge:        &metav1.Duration{Duration: 10 * time.Minute},
		IdentityLabels:        []string{"kubernetes.io/hostname"},
		NarrowFilter:          ptr.To(false),
		GateAtPreEnqueue:      ptr.To(true),
		StatusWritesPerSecond: ptr.To[int32](20),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want, +got):\n%s", diff)
	}
}

func TestDecodeEncodeRoundTrip(t *testing.T) {
	for _, raw := range []string{
		`{}`,
		`{"autoscaling":true,"maxTemplateAge":"3m","nodeGroupsConfigMap":{"namespace":"ballast","name":"groups"}}`,
		`{"apiVersion":"ballast.k8s.io/v1alpha1","kind":"HopelessPodsArgs","narrowFilter":false,"gateAtPreEnqueue":false,"identityLabels":["kubernetes.io/hostname","node.example.com/id"],"statusWritesPerSecond":5}`,
		"autoscaling: true\nmaxTemplateAge: 0s\n",
	} {
		t.Run(raw, func(t *testing.T) {
			first, err := DecodeHopelessPodsArgs(unknown(raw))
			if err != nil {
				t.Fatal(err)
			}
			enc, err := EncodeHopelessPodsArgs(first)
			if err != nil {
				t.Fatal(err)
			}
			second, err := DecodeHopelessPodsArgs(unknown(string(enc)))
			if err != nil {
				t.Fatalf("decoding %s: %v", enc, err)
			}
			first.APIVersion, first.Kind = GroupVersion, HopelessPodsArgsKind
			if diff := cmp.Diff(first, second); diff != "" {
				t.Errorf("round trip (-first, +second):\n%s", diff)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := map[string]string{
		`{"autoscalling":true}`:                                     `unknown field "autoscalling"`,
		`{"autoscaling":"yes"}`:                                     "autoscaling",
		`{"maxTemplateAge":"-1m"}`:                                  "args.maxTemplateAge",
		`{"maxTemplateAge":"soon"}`:                                 "maxTemplateAge",
		`{"nodeGroupsConfigMap":{"namespace":"Bad_NS","name":"x"}}`: "args.nodeGroupsConfigMap.namespace",
		`{"nodeGroupsConfigMap":{"namespace":"a","name":"UPPER"}}`:  "args.nodeGroupsConfigMap.name",
		`{"identityLabels":["not a label"]}`:                        "args.identityLabels[0]",
		`{"statusWritesPerSecond":0}`:                               "args.statusWritesPerSecond",
		`{"apiVersion":"ballast.k8s.io/v2"}`:                        "args.apiVersion",
		`{"kind":"Other"}`:                                          "args.kind",
		`[1,2]`:                                                     "decoding HopelessPods args",
	}
	for raw, want := range tests {
		t.Run(raw, func(t *testing.T) {
			_, err := DecodeHopelessPodsArgs(unknown(raw))
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("want an error naming %q, got %v", want, err)
			}
		})
	}
	if _, err := DecodeHopelessPodsArgs(&metav1.Status{}); err == nil {
		t.Fatal("args of a foreign type must be refused")
	}
}
