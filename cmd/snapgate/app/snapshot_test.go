package app

import (
	"strings"
	"testing"
	"time"
)

func TestSnapshotOptionsValidate(t *testing.T) {
	tests := map[string]struct {
		o   SnapshotOptions
		err string
	}{
		"defaults are fine":          {o: SnapshotOptions{Timeout: time.Minute}},
		"cut is fine":                {o: SnapshotOptions{WaitFor: "cut", Timeout: time.Minute}},
		"an unknown wait is refused": {o: SnapshotOptions{WaitFor: "soon", Timeout: time.Minute}, err: `--wait-for="soon": must be ready or cut`},
		"a zero timeout is refused":  {o: SnapshotOptions{}, err: "--timeout=0s: must be above 0"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.o.Validate()
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
}
