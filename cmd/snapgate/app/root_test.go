package app

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	tests := map[string]struct {
		args      []string
		code      int
		stdout    string
		stderrHas string
	}{
		"version prints the stamped version": {args: []string{"version"}, stdout: "snapgate dev\n"},
		"an unknown subcommand fails and says so": {
			args: []string{"frobnicate"}, code: 1, stderrHas: `unknown command "frobnicate"`,
		},
		"version takes no arguments": {args: []string{"version", "extra"}, code: 1, stderrHas: "unknown command"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := Run(tc.args, &out, &errOut); code != tc.code {
				t.Fatalf("exit code = %d, want %d (stderr %q)", code, tc.code, errOut.String())
			}
			if out.String() != tc.stdout {
				t.Errorf("stdout = %q, want %q", out.String(), tc.stdout)
			}
			if !strings.Contains(errOut.String(), tc.stderrHas) {
				t.Errorf("stderr = %q, want it to contain %q", errOut.String(), tc.stderrHas)
			}
		})
	}
}
