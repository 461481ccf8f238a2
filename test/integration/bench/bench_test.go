// Package bench measures the HopelessPods plugin against vanilla
// kube-scheduler v1.37.2 on the upstream scheduler_perf harness, side by side
// in one run, and writes the comparison table to results/.
package bench

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "k8s.io/component-base/logs/json/register"
	perf "k8s.io/kubernetes/test/integration/scheduler_perf"
	"sigs.k8s.io/yaml"

	"github.com/ballast-k8s/ballast/plugins"
)

func TestMain(m *testing.M) {
	if err := perf.InitTests(); err != nil {
		fmt.Fprintf(os.Stderr, "%v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

var variants = []string{"Toleration", "Requests", "Zone", "LocalPV"}

func envList(name, def string) []string {
	v := os.Getenv(name)
	if v == "" {
		v = def
	}
	return strings.Split(v, ",")
}

// BenchmarkHopeless runs, for each size in BALLAST_BENCH_SIZES (quick,
// incident, stretch) and each variant in BALLAST_BENCH_VARIANTS, the
// baseline, vanilla and Ballast test cases, then writes the table.
func BenchmarkHopeless(b *testing.B) {
	sizes := envList("BALLAST_BENCH_SIZES", "quick")
	chosen := envList("BALLAST_BENCH_VARIANTS", strings.Join(variants, ","))
	resultsDir, _ := filepath.Abs("results")
	raw := filepath.Join(resultsDir, "raw", time.Now().UTC().Format("20060102-150405"))
	for name, value := range map[string]string{"data-items-dir": raw, "with-data-items-unique-id": "false"} {
		if err := flag.Set(name, value); err != nil {
			b.Fatal(err)
		}
	}
	config := filteredConfig(b, chosen)
	for _, size := range sizes {
		b.Run(size, func(b *testing.B) {
			perf.PerfSchedulingLabelFilter = size
			perf.RunBenchmarkPerfScheduling(b, config, size, plugins.Registry())
			if os.Getenv("BALLAST_BENCH_CASES") != "" {
				return // a partial run has no baseline to compare with
			}
			table, err := buildTable(raw, size, chosen)
			if err != nil {
				b.Fatalf("building the table: %v", err)
			}
			out := filepath.Join(resultsDir, size+".md")
			if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
				b.Fatal(err)
			}
			fmt.Printf("\n%s\nwritten to %s\n", table, out)
		})
	}
}

// filteredConfig writes the test cases of the chosen variants (and the
// baseline) to a temporary config; template paths stay relative to this
// package, as scheduler_perf resolves them.
func filteredConfig(b *testing.B, chosen []string) string {
	raw, err := os.ReadFile("performance-config.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var cases []map[string]any
	if err := yaml.Unmarshal(raw, &cases); err != nil {
		b.Fatal(err)
	}
	only := os.Getenv("BALLAST_BENCH_CASES") // comma-separated test case names, for profiling one case
	keep := cases[:0]
	for _, c := range cases {
		name := c["name"].(string)
		if only != "" {
			if slices.Contains(strings.Split(only, ","), name) {
				keep = append(keep, c)
			}
			continue
		}
		if strings.HasPrefix(name, "Baseline") {
			keep = append(keep, c)
			continue
		}
		for _, v := range chosen {
			if strings.HasPrefix(name, v) {
				keep = append(keep, c)
			}
		}
	}
	out, err := yaml.Marshal(keep)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "config.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// run is what one test case measured.
type run struct {
	avg, median     float64 // ordinary pods scheduled per second
	hopelessPerMin  float64 // failed scheduling attempts per minute during the measurement
	p99AttemptMs    float64 // p99 scheduling attempt latency of scheduled (ordinary) pods
	heapMB          float64 // average heap in use of the test process
	found, foundDat bool
}

type dataItems struct {
	DataItems []struct {
		Data   map[string]float64 `json:"data"`
		Labels map[string]string  `json:"labels"`
	} `json:"dataItems"`
}

// buildTable reads the JSON and .dat files that scheduler_perf wrote for
// size and renders the comparison.
func buildTable(dir, size string, chosen []string) (string, error) {
	runs := map[string]*run{}
	get := func(tc string) *run {
		if runs[tc] == nil {
			runs[tc] = &run{}
		}
		return runs[tc]
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*_benchmark_"+size+"*.json"))
	if len(files) == 0 {
		return "", fmt.Errorf("no data items for %s in %s", size, dir)
	}
	sort.Strings(files)
	body, err := os.ReadFile(files[len(files)-1])
	if err != nil {
		return "", err
	}
	var items dataItems
	if err := json.Unmarshal(body, &items); err != nil {
		return "", err
	}
	for _, it := range items.DataItems {
		tc := testCaseOf(it.Labels["Name"], size)
		if tc == "" {
			continue
		}
		r := get(tc)
		switch it.Labels["Metric"] {
		case "SchedulingThroughput":
			r.avg, r.median, r.found = it.Data["Average"], it.Data["Perc50"], true
		case "scheduler_scheduling_attempt_duration_seconds":
			if it.Labels["result"] == "scheduled" {
				r.p99AttemptMs = it.Data["Perc99"]
			}
		case "heap_memory_usage":
			r.heapMB = it.Data["Average"]
		}
	}
	for tc, r := range runs {
		dats, _ := filepath.Glob(filepath.Join(dir, "*"+tc+"_"+size+"*.dat"))
		if len(dats) == 0 {
			continue
		}
		if perMin, ok := failedAttemptsPerMinute(dats[0]); ok {
			r.hopelessPerMin, r.foundDat = perMin, true
		}
	}
	base := runs["Baseline"]
	if base == nil || !base.found {
		return "", fmt.Errorf("the baseline did not produce a throughput for %s", size)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### Hopeless pods, size %q (%d CPU cores, %s, kube-scheduler v1.37.2, %s)\n\n", size, runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format(time.DateOnly))
	b.WriteString("| variant | scheduler | throughput avg (pods/s) | x baseline | median (pods/s) | x baseline | failed attempts/min | p99 attempt (ms) | heap (MB) | x baseline |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	row := func(variant, who string, r *run) {
		if r == nil || !r.found {
			fmt.Fprintf(&b, "| %s | %s | n/a | | | | | | | |\n", variant, who)
			return
		}
		fmt.Fprintf(&b, "| %s | %s | %.1f | %.2f | %.1f | %.2f | %s | %.1f | %.0f | %.2f |\n", variant, who,
			r.avg, ratio(r.avg, base.avg), r.median, ratio(r.median, base.median), perMinute(r), r.p99AttemptMs, r.heapMB, ratio(r.heapMB, base.heapMB))
	}
	row("-", "vanilla, no hopeless pods (baseline)", base)
	if r := runs["BaselineBallast"]; r != nil {
		row("-", "Ballast, no hopeless pods", r)
	}
	for _, v := range chosen {
		row(v, "vanilla", runs[v+"Vanilla"])
		row(v, "Ballast", runs[v+"Ballast"])
		if r := runs[v+"BallastNoGate"]; r != nil {
			row(v, "Ballast, no PreEnqueue gate", r)
		}
	}
	b.WriteString("\nGoals: Ballast >= 0.95x baseline throughput (average and median); failed attempts/min at least 100x below vanilla; heap within 10% of vanilla.\n\n")
	for _, v := range chosen {
		van, bal := runs[v+"Vanilla"], runs[v+"Ballast"]
		if van == nil || bal == nil || !van.found || !bal.found {
			continue
		}
		fmt.Fprintf(&b, "- %s: Ballast/baseline avg %.2f, median %.2f; failed attempts/min vanilla %s vs Ballast %s (%s less); heap Ballast/vanilla %.2f\n",
			v, ratio(bal.avg, base.avg), ratio(bal.median, base.median), perMinute(van), perMinute(bal), reduction(van, bal), ratio(bal.heapMB, van.heapMB))
	}
	return b.String(), nil
}

// testCaseOf extracts the test case from a data item's Name label, which is
// "<benchmark>/<size>/<test case>/<workload>".
func testCaseOf(name, size string) string {
	parts := strings.Split(name, "/")
	for i := 0; i+1 < len(parts); i++ {
		if parts[i+1] == size && i > 0 {
			return parts[i]
		}
	}
	return ""
}

// failedAttemptsPerMinute reads scheduler_perf's progress samples: columns
// are time, completed (scheduled) attempts, all attempts, ...
func failedAttemptsPerMinute(path string) (float64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var first, last []float64
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 3 {
			continue
		}
		v := make([]float64, 3)
		v[0], _ = strconv.ParseFloat(strings.TrimSuffix(fields[0], "s"), 64)
		v[1], _ = strconv.ParseFloat(fields[1], 64)
		v[2], _ = strconv.ParseFloat(fields[2], 64)
		if first == nil {
			first = v
		}
		last = v
	}
	if first == nil || last[0] <= first[0] {
		return 0, false
	}
	failed := (last[2] - first[2]) - (last[1] - first[1])
	return failed / (last[0] - first[0]) * 60, true
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

func perMinute(r *run) string {
	if !r.foundDat {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", r.hopelessPerMin)
}

func reduction(van, bal *run) string {
	if !van.foundDat || !bal.foundDat {
		return "n/a"
	}
	if bal.hopelessPerMin < 1 {
		return fmt.Sprintf(">%.0fx", van.hopelessPerMin)
	}
	return fmt.Sprintf("%.0fx", van.hopelessPerMin/bal.hopelessPerMin)
}
