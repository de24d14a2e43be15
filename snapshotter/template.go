package snapshotter

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
)

// The pod template is the largest part of a set's record, and the CSI
// pipeline carries every annotation of a snapshot through each of its updates
// (measured here: 100 to 200 ms more for a set of 10 to 30 when each snapshot
// carried it). So one snapshot of a set carries the template and the others
// its digest, which still ties each of them to the same template. A set
// restores only whole, so the one copy is there whenever the set can restore.

// TemplateDigest is what AnnotationPodTemplateDigest holds for a recorded pod
// template: its SHA-256, in hex.
func TemplateDigest(template string) string {
	sum := sha256.Sum256([]byte(template))
	return hex.EncodeToString(sum[:])
}

// RecordedTemplate returns the pod template (as recorded: JSON) that the
// snapshots of one set record, and the snapshot that carries it. Every other
// snapshot must carry the same template or its digest: sets taken before the
// template went on one snapshot carry it on each.
func RecordedTemplate(set string, snaps []snapv1.VolumeSnapshot) (string, *snapv1.VolumeSnapshot, error) {
	byName := make([]*snapv1.VolumeSnapshot, len(snaps))
	for i := range snaps {
		byName[i] = &snaps[i]
	}
	sort.Slice(byName, func(i, j int) bool { return byName[i].Name < byName[j].Name })
	var carrier *snapv1.VolumeSnapshot
	for _, vs := range byName {
		if _, ok := vs.Annotations[AnnotationPodTemplate]; ok {
			carrier = vs
			break
		}
	}
	if carrier == nil {
		return "", nil, fmt.Errorf("no snapshot of set %s carries the pod template it was taken with (%s)", set, AnnotationPodTemplate)
	}
	tmpl := carrier.Annotations[AnnotationPodTemplate]
	digest := TemplateDigest(tmpl)
	for _, vs := range byName {
		t, hasTemplate := vs.Annotations[AnnotationPodTemplate]
		if hasTemplate && t == tmpl || !hasTemplate && vs.Annotations[AnnotationPodTemplateDigest] == digest {
			continue
		}
		return "", nil, fmt.Errorf("the snapshots of set %s disagree about the pod template they record (%s and %s): it is not one set", set, carrier.Name, vs.Name)
	}
	return tmpl, carrier, nil
}
