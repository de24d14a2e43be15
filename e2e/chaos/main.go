// Command chaos prints the fault suite of `make chaos` as a table of fault,
// test and outcome, from the `go test -json` output of its tests on stdin.
// With -run PKG it prints instead the -run pattern of the suite's tests in
// that package. It exits 1 when a test failed or did not run.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
)

func main() {
	run := flag.String("run", "", "print the -run pattern of the suite's tests in this package, and exit")
	flag.Parse()
	if *run != "" {
		fmt.Println(pattern(*run))
		return
	}
	outcomes, err := readOutcomes(os.Stdin, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	if !printTable(os.Stdout, outcomes) {
		os.Exit(1)
	}
}

// pattern is a -run pattern that matches exactly the suite's tests of pkg.
func pattern(pkg string) string {
	var names []string
	seen := map[string]bool{}
	for _, f := range faults {
		for _, t := range f.tests {
			if t.pkg == pkg && !seen[t.name] {
				seen[t.name] = true
				names = append(names, regexp.QuoteMeta(t.name))
			}
		}
	}
	return "^(" + strings.Join(names, "|") + ")$"
}

// outcome is how one test ended, as go test -json tells it.
type outcome struct {
	action  string // pass, fail or skip
	elapsed float64
}

// event is the part of a test2json event read here.
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// readOutcomes reads go test -json events and keeps how each top-level test
// ended, by package and name; lines that are not events are passed over. As
// each test ends it says so on progress, with the whole output of a failed one.
func readOutcomes(r io.Reader, progress io.Writer) (map[test]outcome, error) {
	out := map[test]outcome{}
	output := map[test][]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev event
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Test == "" {
			continue
		}
		top := test{ev.Package, strings.SplitN(ev.Test, "/", 2)[0]}
		if ev.Action == "output" {
			output[top] = append(output[top], ev.Output)
			continue
		}
		if strings.Contains(ev.Test, "/") {
			continue
		}
		switch ev.Action {
		case "pass", "fail", "skip":
			out[top] = outcome{ev.Action, ev.Elapsed}
			fmt.Fprintf(progress, "chaos: %s %s (%.0fs)\n", ev.Test, map[string]string{"pass": "passed", "fail": "failed", "skip": "skipped"}[ev.Action], ev.Elapsed)
			if ev.Action == "fail" {
				fmt.Fprint(progress, strings.Join(output[top], ""))
			}
			delete(output, top)
		}
	}
	return out, sc.Err()
}

// printTable writes one row per test of each fault (one row for a fault no
// test stages) and reports whether every test of the suite passed.
func printTable(w io.Writer, outcomes map[test]outcome) bool {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tFAULT\tTEST\tOUTCOME")
	ok := true
	for i, f := range faults {
		what := f.what
		for _, t := range f.tests {
			o, ran := outcomes[t]
			result := "DID NOT RUN"
			switch {
			case ran && o.action == "pass":
				result = fmt.Sprintf("passed in %.0fs", o.elapsed)
			case ran && o.action == "fail":
				result = fmt.Sprintf("FAILED after %.0fs", o.elapsed)
			case ran:
				result = "SKIPPED"
			}
			if !ran || o.action != "pass" {
				ok = false
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", i+1, what, t.name, result)
			what = ""
		}
		if f.gap != "" {
			fmt.Fprintf(tw, "%d\t%s\t-\tgap: %s\n", i+1, what, f.gap)
		}
	}
	tw.Flush()
	return ok
}
