package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTheTableHoldsEachFigureToItsTarget(t *testing.T) {
	dir := t.TempDir()
	bench := filepath.Join(dir, "bench.txt")
	os.WriteFile(bench, []byte(strings.Join([]string{
		"admit.replicas=1.snapgate 880 ms",
		"admit.replicas=1.baseline 760 ms", // +120 ms, +15.8%: missed
		"admit.replicas=10.snapgate 1290 ms",
		"admit.replicas=10.baseline 1210 ms", // +80 ms: met by the 100 ms floor
		"admit.replicas=100.snapgate 9000 ms",
		"admit.replicas=100.baseline 8500 ms", // +500 ms, +5.9%: met
		"admit.replicas=100.snapgate_cut 7900 ms", "admit.replicas=100.snapgate_ready 8900 ms", "admit.replicas=100.baseline_cut 7950 ms",
		"concurrent50.p50 3000 ms", "concurrent50.p99 4100 ms", "concurrent50.last 4200 ms",
		"concurrent50.baseline 4000 ms", "concurrent50.duplicates 0 sets",
		"rss.statefulsets=1000 80 MiB", "rss.soak=10000 95.5 MiB", // grew 15.5 MiB: not flat
		"passthrough.api.p50 4.1 ms", "passthrough.api.p99 9.9 ms", "passthrough.api.nogate.p50 3 ms", "passthrough.api.nogate.p99 6 ms",
		"passthrough.serial.p50 4.1 ms", "passthrough.serial.p99 12 ms", "passthrough.serial.nogate.p50 3 ms", "passthrough.serial.nogate.p99 6 ms", // +6 ms: missed
		"passthrough.serial.admission 1.9 ms", "passthrough.serial.webhook_call 1.8 ms", "passthrough.serial.handler 0.76 ms",
		"freeze.replicas=1.window 420 ms", "freeze.replicas=1.hooks 90 ms", "freeze.replicas=1.cut 250 ms", // +80 ms: met
		"freeze.replicas=3.window 520 ms", "freeze.replicas=3.hooks 90 ms", "freeze.replicas=3.cut 250 ms", // +180 ms: missed
		"not a figure",
	}, "\n")), 0o644)
	passthrough := filepath.Join(dir, "pt.txt")
	os.WriteFile(passthrough, []byte("goos: linux\nBenchmarkPassThrough-2   \t  100000\t     12345 ns/op\t  5000 B/op\nPASS\n"), 0o644)

	figures, err := readFigures(bench)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := passThroughNs(passthrough)
	if err != nil || ns != 12345 {
		t.Fatalf("pass-through: %v, %v", ns, err)
	}
	figures["passthrough.decision"] = ns
	met, value := map[string]string{}, map[string]string{}
	for _, r := range rows(figures) {
		met[r.measure], value[r.measure] = r.met, r.value
	}
	if want := "9000 ms (CSI 8500 ms, +500 ms, +5.9%; last cut 7900 ms (CSI 7950 ms), last ready 8900 ms (CSI 8500 ms))"; value["time-to-admit, 100 replicas"] != want {
		t.Errorf("time-to-admit, 100 replicas: %q, want %q", value["time-to-admit, 100 replicas"], want)
	}
	where := "where a pass-through request's time goes, one at a time (means)"
	if want := "the API server's webhook admission 1.9 ms; of it, its call to snapgate 1.8 ms; of that, snapgate's handler 0.76 ms"; value[where] != want {
		t.Errorf("%s: %q, want %q", where, value[where], want)
	}
	if _, ok := value["where a pass-through request's time goes, 16 at a time (means)"]; ok {
		t.Error("a row of where the time goes, 16 at a time, without its figures")
	}
	for measure, want := range map[string]string{
		"pass-through decision":                                                 "yes",
		"time-to-admit, 1 replicas":                                             "NO",
		"time-to-admit, 3 replicas":                                             "not measured",
		"time-to-admit, 10 replicas":                                            "yes",
		"time-to-admit, 100 replicas":                                           "yes",
		"100 replicas in one webhook call":                                      "yes",
		"50 concurrent 3-replica upgrades: duplicate sets":                      "yes",
		"50 concurrent upgrades: last admitted":                                 "yes",
		"RSS with 1,000 guarded StatefulSets":                                   "yes",
		"RSS after a 10,000-request soak":                                       "NO",
		"pass-through request through the API server, 16 at a time: added p99":  "yes",
		"pass-through request through the API server, one at a time: added p99": "NO",
		"freeze window, 1 replicas":                                             "yes",
		"freeze window, 3 replicas":                                             "NO",
		"freeze window, 10 replicas":                                            "not measured",
	} {
		if met[measure] != want {
			t.Errorf("%s: met %q, want %q", measure, met[measure], want)
		}
	}
}
