package deploy_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/balancer"
)

// describingRegisterer records the names of the metrics registered with it,
// including vectors that have no series yet.
type describingRegisterer struct{ names []string }

var fqName = regexp.MustCompile(`fqName: "(\w+)"`)

func (r *describingRegisterer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names = append(r.names, m[1])
		}
	}
	return nil
}

func (r *describingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *describingRegisterer) Unregister(prometheus.Collector) bool { return false }

// collectorNames are the metrics az-balancer registers: the loop's and the AWS calls'.
func collectorNames(t *testing.T) []string {
	t.Helper()
	reg := &describingRegisterer{}
	balancer.New(fake.NewClientset(), nil, record.NewFakeRecorder(1), clocktesting.NewFakeClock(testStart), balancer.Options{}, reg)
	if _, err := asg.New(context.Background(), asg.Options{Region: "us-east-1", AccessKeyID: "id", SecretAccessKey: "secret", Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if len(reg.names) < 5 {
		t.Fatalf("az-balancer registered %v", reg.names)
	}
	return reg.names
}

var testStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
