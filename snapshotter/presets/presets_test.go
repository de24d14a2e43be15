package presets

import (
	"slices"
	"testing"
)

func TestEveryPresetSaysWhatItDoesAndQuiesces(t *testing.T) {
	if got := Names(); !slices.Equal(got, []string{"postgres", "mysql", "mongodb", "fsfreeze"}) {
		t.Errorf("Names() = %v", got)
	}
	for name, p := range All {
		if p.Does == "" || len(p.Pre) == 0 || p.Pre[0] != "sh" {
			t.Errorf("preset %s: does %q, pre %v; want a description and a shell pre-hook", name, p.Does, p.Pre)
		}
	}
}
