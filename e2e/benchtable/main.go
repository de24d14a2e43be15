// Command benchtable prints the table of `make bench`: each figure the
// benchmarks kept (`name value unit` lines in the file named first) beside its
// target, and whether it was met. A second file, when named, is the output of
// the pass-through Go benchmark. A target whose figure is missing says so.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtable BENCH.TXT [PASSTHROUGH.TXT]")
		os.Exit(2)
	}
	figures, err := readFigures(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(2)
	}
	if len(os.Args) > 2 {
		if ns, err := passThroughNs(os.Args[2]); err == nil {
			figures["passthrough.decision"] = ns
		}
	}
	printTable(os.Stdout, figures)
}

// readFigures reads `name value unit` lines; a later line of a name wins.
func readFigures(path string) (map[string]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[1], 64); err == nil {
			out[fields[0]] = v
		}
	}
	return out, sc.Err()
}

// passThroughNs is the ns/op of BenchmarkPassThrough in go test's output.
func passThroughNs(path string) (float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "BenchmarkPassThrough") {
			continue
		}
		for i := 1; i+1 < len(fields); i++ {
			if fields[i+1] == "ns/op" {
				return strconv.ParseFloat(fields[i], 64)
			}
		}
	}
	return 0, fmt.Errorf("no BenchmarkPassThrough line in %s", path)
}

// row is one line of the table.
type row struct {
	measure, value, target string
	// met is "yes", "NO", or "not measured".
	met string
}

// rows are the table's lines, in the order of the targets in the README.
func rows(f map[string]float64) []row {
	var out []row
	has := func(names ...string) bool {
		for _, n := range names {
			if _, ok := f[n]; !ok {
				return false
			}
		}
		return true
	}
	verdict := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "NO"
	}
	missing := func(measure, target string) row { return row{measure, "-", target, "not measured"} }

	if has("passthrough.decision") {
		ns := f["passthrough.decision"]
		out = append(out, row{"pass-through decision", fmt.Sprintf("%.1f µs", ns/1000), "well under 1 ms (< 100 µs)", verdict(ns < 100_000)})
	} else {
		out = append(out, missing("pass-through decision", "well under 1 ms (< 100 µs)"))
	}
	for _, n := range []int{1, 3, 10, 30, 100} {
		g, base := fmt.Sprintf("admit.replicas=%d.snapgate", n), fmt.Sprintf("admit.replicas=%d.baseline", n)
		measure := fmt.Sprintf("time-to-admit, %d replicas", n)
		target := "≤ CSI + max(10%, 100 ms)"
		if !has(g, base) {
			out = append(out, missing(measure, target))
			continue
		}
		over := f[g] - f[base]
		value := fmt.Sprintf("%.0f ms (CSI %.0f ms, %+.0f ms, %+.1f%%", f[g], f[base], over, 100*over/f[base])
		if r, ok := f[fmt.Sprintf("admit.replicas=%d.baseline_record", n)]; ok {
			value += fmt.Sprintf("; CSI with snapgate's record %.0f ms", r)
		}
		if cut, ready, baseCut := fmt.Sprintf("admit.replicas=%d.snapgate_cut", n), fmt.Sprintf("admit.replicas=%d.snapgate_ready", n), fmt.Sprintf("admit.replicas=%d.baseline_cut", n); has(cut, ready, baseCut) {
			value += fmt.Sprintf("; last cut %.0f ms (CSI %.0f ms), last ready %.0f ms (CSI %.0f ms)", f[cut], f[baseCut], f[ready], f[base])
		}
		out = append(out, row{measure, value + ")", target, verdict(over <= max(0.1*f[base], 100))})
	}
	if has("admit.replicas=100.snapgate") {
		out = append(out, row{"100 replicas in one webhook call", fmt.Sprintf("%.1f s", f["admit.replicas=100.snapgate"]/1000), "inside the 25 s budget", verdict(f["admit.replicas=100.snapgate"] < 25_000)})
	} else {
		out = append(out, missing("100 replicas in one webhook call", "inside the 25 s budget"))
	}
	if has("concurrent50.last", "concurrent50.baseline", "concurrent50.duplicates", "concurrent50.p50", "concurrent50.p99") {
		last, base := f["concurrent50.last"], f["concurrent50.baseline"]
		out = append(out,
			row{"50 concurrent 3-replica upgrades: duplicate sets", fmt.Sprintf("%.0f", f["concurrent50.duplicates"]), "0", verdict(f["concurrent50.duplicates"] == 0)},
			row{"50 concurrent upgrades: last admitted", fmt.Sprintf("%.1f s (CSI %.1f s for the 150, %+.0f%%; p50 %.1f s, p99 %.1f s)", last/1000, base/1000, 100*(last-base)/base, f["concurrent50.p50"]/1000, f["concurrent50.p99"]/1000),
				"≤ CSI + max(10%, 1 s)", verdict(last-base <= max(0.1*base, 1000))})
	} else {
		out = append(out, missing("50 concurrent 3-replica upgrades", "no duplicate; last ≤ CSI + max(10%, 1 s)"))
	}
	for _, n := range []int{1, 3, 10} {
		w, h, c := fmt.Sprintf("freeze.replicas=%d.window", n), fmt.Sprintf("freeze.replicas=%d.hooks", n), fmt.Sprintf("freeze.replicas=%d.cut", n)
		measure := fmt.Sprintf("freeze window, %d replicas", n)
		target := "≤ hooks + cut + 100 ms"
		if !has(w, h, c) {
			out = append(out, missing(measure, target))
			continue
		}
		over := f[w] - f[h] - f[c]
		value := fmt.Sprintf("%.0f ms (hooks %.0f ms, CSI cut %.0f ms, %+.0f ms", f[w], f[h], f[c], over)
		if r, ok := f[fmt.Sprintf("freeze.replicas=%d.cut_record", n)]; ok {
			value += fmt.Sprintf("; CSI cut with snapgate's record %.0f ms", r)
		}
		out = append(out, row{measure, value + ")", target, verdict(over <= 100)})
	}
	// The pass-through's added latency, 16 at a time and one at a time: the
	// figures are <prefix>.p50/.p99 with snapgate and <prefix>.nogate.* without.
	for _, pt := range []struct{ measure, prefix string }{
		{"pass-through request through the API server, 16 at a time: added p99", "passthrough.api"},
		{"pass-through request through the API server, one at a time: added p99", "passthrough.serial"},
	} {
		p50, p99, np50, np99 := pt.prefix+".p50", pt.prefix+".p99", pt.prefix+".nogate.p50", pt.prefix+".nogate.p99"
		if !has(p50, p99, np50, np99) {
			out = append(out, missing(pt.measure, "< 5 ms"))
			continue
		}
		added := f[p99] - f[np99]
		out = append(out, row{pt.measure, fmt.Sprintf("%+.1f ms (p50 %.1f / p99 %.1f ms with snapgate, %.1f / %.1f ms without)",
			added, f[p50], f[p99], f[np50], f[np99]), "< 5 ms", verdict(added < 5)})
	}
	for _, pt := range []struct{ measure, prefix string }{
		{"where a pass-through request's time goes, 16 at a time (means)", "passthrough.api"},
		{"where a pass-through request's time goes, one at a time (means)", "passthrough.serial"},
	} {
		step, call, handler := pt.prefix+".admission", pt.prefix+".webhook_call", pt.prefix+".handler"
		if has(step, call, handler) {
			out = append(out, row{pt.measure, fmt.Sprintf("the API server's webhook admission %.1f ms; of it, its call to snapgate %.1f ms; of that, snapgate's handler %.2f ms",
				f[step], f[call], f[handler]), "reported", "-"})
		}
	}
	if has("passthrough.cpu_per_request") {
		us := f["passthrough.cpu_per_request"]
		out = append(out, row{"snapgate's CPU at 2,000 pass-through requests/s", fmt.Sprintf("%.2f cores (%.0f µs a request, in the soak)", us*2000/1e6, us), "reported", "-"})
	}
	if has("rss.statefulsets=1000") {
		out = append(out, row{"RSS with 1,000 guarded StatefulSets", fmt.Sprintf("%.1f MiB", f["rss.statefulsets=1000"]), "≤ 100 MiB", verdict(f["rss.statefulsets=1000"] <= 100)})
	} else {
		out = append(out, missing("RSS with 1,000 guarded StatefulSets", "≤ 100 MiB"))
	}
	if has("rss.statefulsets=1000", "rss.soak=10000") {
		before, after := f["rss.statefulsets=1000"], f["rss.soak=10000"]
		out = append(out, row{"RSS after a 10,000-request soak", fmt.Sprintf("%.1f MiB (%+.1f MiB)", after, after-before), "≤ 100 MiB, within 10 MiB of before", verdict(after <= 100 && after-before <= 10)})
	} else {
		out = append(out, missing("RSS after a 10,000-request soak", "≤ 100 MiB, within 10 MiB of before"))
	}
	return out
}

func printTable(w io.Writer, f map[string]float64) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEASURE\tVALUE\tTARGET\tMET")
	for _, r := range rows(f) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.measure, r.value, r.target, r.met)
	}
	tw.Flush()
}
