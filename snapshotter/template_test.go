package snapshotter

import (
	"strings"
	"testing"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestRecordedTemplateIsOnOneSnapshotAndTiedToTheOthersByItsDigest(t *testing.T) {
	const tmpl, other = `{"spec":{"containers":[{"name":"db","image":"postgres:15"}]}}`, `{"spec":{"containers":[{"name":"db","image":"postgres:17"}]}}`
	snap := func(name string, ann map[string]string) snapv1.VolumeSnapshot {
		return snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}}
	}
	carries := func(t string) map[string]string { return map[string]string{AnnotationPodTemplate: t} }
	digest := func(t string) map[string]string {
		return map[string]string{AnnotationPodTemplateDigest: TemplateDigest(t)}
	}
	for _, tc := range []struct {
		name    string
		snaps   []snapv1.VolumeSnapshot
		carrier string
		err     string
	}{
		{"one carries it, the others its digest", []snapv1.VolumeSnapshot{snap("data-db-1", digest(tmpl)), snap("data-db-0", carries(tmpl)), snap("data-db-2", digest(tmpl))}, "data-db-0", ""},
		{"a set taken when each carried it", []snapv1.VolumeSnapshot{snap("data-db-1", carries(tmpl)), snap("data-db-0", carries(tmpl))}, "data-db-0", ""},
		{"one of another template", []snapv1.VolumeSnapshot{snap("data-db-0", carries(tmpl)), snap("data-db-1", digest(other))}, "", "disagree about the pod template they record (data-db-0 and data-db-1)"},
		{"one carrying another template", []snapv1.VolumeSnapshot{snap("data-db-0", carries(tmpl)), snap("data-db-1", carries(other))}, "", "disagree"},
		{"one carrying neither", []snapv1.VolumeSnapshot{snap("data-db-0", carries(tmpl)), snap("data-db-1", nil)}, "", "disagree"},
		{"none carries it", []snapv1.VolumeSnapshot{snap("data-db-0", digest(tmpl)), snap("data-db-1", digest(tmpl))}, "", "no snapshot of set s carries the pod template"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, carrier, err := RecordedTemplate("s", tc.snaps)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("RecordedTemplate = %q, %v; want an error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tmpl || carrier.Name != tc.carrier {
				t.Fatalf("RecordedTemplate = %q on %v, %v; want the template on %s", got, carrier, err, tc.carrier)
			}
		})
	}
}
