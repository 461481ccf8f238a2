package demo

import (
	"fmt"
	"os"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testutils "k8s.io/kubernetes/test/integration/util"

	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// TestDemo is `make demo`: both incidents, with and without Ballast.
func TestDemo(t *testing.T) {
	server := testutils.InitTestAPIServer(t, "demo", nil)
	ctx, cs := server.Ctx, server.ClientSet
	defer testutils.CleanupNodes(cs, t)
	for i := 0; i < generalNodes; i++ {
		if _, err := cs.CoreV1().Nodes().Create(ctx, testenv.Node(fmt.Sprintf("node-%d", i), map[string]string{"pool": "general"}, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < poolNodes; i++ {
		if _, err := cs.CoreV1().Nodes().Create(ctx, testenv.Node(fmt.Sprintf("batch-%d", i), map[string]string{"pool": "batch"}, []v1.Taint{batchTaint}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	vanilla := replayIncident8(t, server, "Vanilla", "vanilla.yaml", 0)
	// Ballast tells each parked pod why at 20 writes a second: at least
	// 100 within the minute replayIncident8 waits.
	ballast := replayIncident8(t, server, "Ballast", "ballast.yaml", 100)
	seven := replayIncident7(t, server)

	var b strings.Builder
	fmt.Fprintln(&b, "BALLAST DEMO")
	fmt.Fprintf(&b, "\nIncident 8: %d pods of a CronJob with a wrong toleration, %d nodes, one node of their pool re-created every second;\nthen %d ordinary pods are created and timed.\n\n", hopelessPods, generalNodes+poolNodes, ordinaryPods)
	fmt.Fprintf(&b, "  %-48s %18s %12s\n", "", "kube-scheduler", "Ballast")
	fmt.Fprintf(&b, "  %-48s %17.1fs %11.1fs\n", "time to schedule the ordinary pods", vanilla.scheduleTime.Seconds(), ballast.scheduleTime.Seconds())
	fmt.Fprintf(&b, "  %-48s %18.0f %12.0f\n", "ordinary pods scheduled per second", vanilla.throughput, ballast.throughput)
	fmt.Fprintf(&b, "  %-48s %18.0f %12.0f\n", "failed scheduling attempts meanwhile", vanilla.failedAttempts, ballast.failedAttempts)
	fmt.Fprintf(&b, "  %-48s %18d %12d\n", "hopeless pods told why so far (20 writes/s)", vanilla.withReason, ballast.withReason)
	b.WriteString(seven.report())
	fmt.Fprintln(&b, "\nEND OF DEMO")
	fmt.Fprint(os.Stdout, b.String())

	if vanilla.failedAttempts < 100 {
		t.Errorf("the demo did not reproduce incident 8: vanilla made only %.0f failed attempts", vanilla.failedAttempts)
	}
	if ballast.failedAttempts*10 > vanilla.failedAttempts {
		t.Errorf("Ballast made %.0f failed attempts, vanilla %.0f: want at least 10x fewer", ballast.failedAttempts, vanilla.failedAttempts)
	}
	if vanilla.withReason != 0 {
		t.Errorf("%d pods carry Ballast's reason under vanilla kube-scheduler", vanilla.withReason)
	}
	seven.check(t)
}
