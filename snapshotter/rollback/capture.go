package rollback

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/component-helpers/storage/volume"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Capture is a PV that Kubernetes would bind a restored PVC to in place of a
// volume provisioned from the PVC's snapshot.
type Capture struct {
	Claim  *corev1.PersistentVolumeClaim
	Volume *corev1.PersistentVolume
}

// String says which PV would take which PVC, and why that matters.
func (c Capture) String() string {
	size := c.Volume.Spec.Capacity[corev1.ResourceStorage]
	from := ""
	if ds := c.Claim.Spec.DataSource; ds != nil {
		from = " " + ds.Name
	}
	how := "is " + string(c.Volume.Status.Phase)
	if ref := c.Volume.Spec.ClaimRef; ref != nil {
		how = "is bound ahead of time (claimRef) to " + ref.Namespace + "/" + ref.Name
	}
	return fmt.Sprintf("PV %s (class %q, %s) %s and would be bound to PVC %s/%s in place of a volume restored from snapshot%s",
		c.Volume.Name, volume.GetPersistentVolumeClass(c.Volume), size.String(), how, c.Claim.Namespace, c.Claim.Name, from)
}

// CapturingVolumes lists the PVs once and returns each claim, not yet
// created, that an existing PV would capture.
//
// The PV controller (Immediate binding) and the scheduler (WaitForFirstConsumer)
// bind a new PVC to a matching PV before they provision one, with a dataSource
// or without: FindMatchingVolume (k8s.io/component-helpers/storage/volume,
// which both call) has no dataSource check. A restored PVC so bound holds that
// volume's data, not its snapshot's, and a rollback would start the database
// on it. The match is upstream's, with access modes checked as both callers do;
// node affinity is not, so a PV the scheduler would pass over on the pod's node
// still counts: a restore waits rather than guesses.
func CapturingVolumes(ctx context.Context, r client.Reader, claims []*corev1.PersistentVolumeClaim) (Captures, error) {
	if len(claims) == 0 {
		return nil, nil
	}
	var list corev1.PersistentVolumeList
	if err := r.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list PVs, to check that none would be bound to a restored PVC in place of its snapshot: %w", err)
	}
	var captures Captures
	for _, claim := range claims {
		var candidates []*corev1.PersistentVolume
		for i := range list.Items {
			if pv := &list.Items[i]; volume.CheckAccessModes(claim, pv) {
				candidates = append(candidates, pv)
			}
		}
		pv, err := volume.FindMatchingVolume(claim, candidates, nil, nil, false, true)
		if err != nil {
			return nil, fmt.Errorf("match PVs to restored PVC %s: %w", claim.Name, err)
		}
		if pv != nil {
			captures = append(captures, Capture{Claim: claim, Volume: pv})
		}
	}
	return captures, nil
}

// Captures are the claims of one restore that PVs would capture.
type Captures []Capture

// String says which PV would take which PVC, then what the user does about
// it: bind those PVs elsewhere, or delete them.
func (cs Captures) String() string {
	what := make([]string, len(cs))
	pvs := make([]string, len(cs))
	for i, c := range cs {
		what[i], pvs[i] = c.String(), c.Volume.Name
	}
	return fmt.Sprintf("%s; bind %s to the claim it is meant for (spec.claimRef), or delete it if its data is not needed (kubectl get pv %s)",
		strings.Join(what, "; "), strings.Join(pvs, ", "), strings.Join(pvs, " "))
}
