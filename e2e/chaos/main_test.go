package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Every test the suite names is a test of its package: a renamed test would
// otherwise show as DID NOT RUN only when someone runs `make chaos`.
func TestEveryTestOfTheSuiteExists(t *testing.T) {
	funcs := map[test]bool{}
	for _, f := range faults {
		for _, tc := range f.tests {
			dir := filepath.Join("..", "..", strings.TrimPrefix(tc.pkg, "github.com/snapgate/snapgate/"))
			if _, err := os.Stat(dir); err != nil {
				t.Errorf("%s: package %s: %v", tc.name, tc.pkg, err)
				continue
			}
			files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
			for _, file := range files {
				f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range f.Decls {
					if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil {
						funcs[test{tc.pkg, fn.Name.Name}] = true
					}
				}
			}
			if !funcs[tc] {
				t.Errorf("fault %q names %s, which is no test in %s", f.what, tc.name, dir)
			}
		}
	}
}

func TestTheTableTellsEachTestsOutcome(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"run","Package":"github.com/snapgate/snapgate/e2e","Test":"TestDryRunCreatesNothing"}`,
		`{"Action":"pass","Package":"github.com/snapgate/snapgate/e2e","Test":"TestDryRunCreatesNothing","Elapsed":1.2}`,
		`{"Action":"output","Package":"github.com/snapgate/snapgate/e2e","Test":"TestTLSOlderThan12IsRefused","Output":"    TLS 1.1: served\n"}`,
		`{"Action":"fail","Package":"github.com/snapgate/snapgate/e2e","Test":"TestTLSOlderThan12IsRefused","Elapsed":0.4}`,
		`{"Action":"pass","Package":"github.com/snapgate/snapgate/e2e","Test":"TestBadAnnotationsAreDeniedByName/sub","Elapsed":3}`,
		`not an event`,
	}, "\n")
	var progress strings.Builder
	outcomes, err := readOutcomes(strings.NewReader(in), &progress)
	if err != nil {
		t.Fatal(err)
	}
	if got := progress.String(); got != "chaos: TestDryRunCreatesNothing passed (1s)\nchaos: TestTLSOlderThan12IsRefused failed (0s)\n    TLS 1.1: served\n" {
		t.Errorf("progress:\n%s", got)
	}
	// A fault that no test stages yet gets a row of its own.
	saved := faults
	faults = append(slices.Clone(faults), fault{what: "a fault no test stages", gap: "not staged yet"})
	t.Cleanup(func() { faults = saved })
	var b strings.Builder
	if printTable(&b, outcomes) {
		t.Error("a table with a failed test and tests that did not run is ok")
	}
	table := b.String()
	for _, want := range []string{
		`TestDryRunCreatesNothing\s+passed in 1s\n`,
		`TestTLSOlderThan12IsRefused\s+FAILED after 0s\n`,
		`TestBadAnnotationsAreDeniedByName\s+DID NOT RUN\n`,
		fmt.Sprintf(`%d\s+a fault no test stages\s+-\s+gap: not staged yet\n`, len(faults)),
	} {
		if !regexp.MustCompile(want).MatchString(table) {
			t.Errorf("the table lacks a row %q:\n%s", want, table)
		}
	}

	all := map[test]outcome{}
	for _, f := range faults {
		for _, tc := range f.tests {
			all[tc] = outcome{"pass", 1}
		}
	}
	if !printTable(&strings.Builder{}, all) {
		t.Error("a table whose every test passed is not ok")
	}
}
