package snapshotter

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

// Kubernetes name limits.
const (
	maxLabelValue = 63
	maxObjectName = 253
	hashLen       = 8
)

// SetHash identifies one change to one StatefulSet: the same change, retried,
// hashes the same (and so finds its set again); any other change does not.
// oldGeneration pins the spec the change applies to. It is the generation and
// not the resourceVersion: the StatefulSet controller writes status while a set
// is taken, the API server then retries the update on the new resourceVersion,
// calling the webhook again, and that must find the same set.
// nonce tells apart sets that the same spec would otherwise share (a snapshot
// taken on demand); it is empty for a change.
func SetHash(uid types.UID, oldGeneration int64, reason policy.Reason, newTemplate *corev1.PodTemplateSpec, newReplicas int32, nonce string) string {
	h := sha256.New()
	tmpl, _ := json.Marshal(newTemplate) // a PodTemplateSpec always marshals
	for _, part := range [][]byte{[]byte(uid), []byte(strconv.FormatInt(oldGeneration, 10)), []byte(reason), tmpl, []byte(strconv.Itoa(int(newReplicas))), []byte(nonce)} {
		h.Write(part)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:hashLen]
}

// SetName is the set's name, "<statefulset>-<hash>", cut to fit a label value.
func SetName(statefulSet, hash string) string {
	return truncate(statefulSet, maxLabelValue-1-len(hash)) + "-" + hash
}

// SnapshotName mirrors the PVC's name, "<pvc>-<hash>", cut to fit an object name.
func SnapshotName(pvc, hash string) string {
	return truncate(pvc, maxObjectName-1-len(hash)) + "-" + hash
}

// LabelValue fits s into a label value; a long one is cut and made unique again
// with a hash of the whole.
func LabelValue(s string) string {
	if len(s) <= maxLabelValue {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return truncate(s, maxLabelValue-1-hashLen) + "-" + hex.EncodeToString(sum[:])[:hashLen]
}

// truncate cuts s to n bytes, and never leaves a trailing '-' or '.', which
// names and label values may not end with.
func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	for len(s) > 0 && (s[len(s)-1] == '-' || s[len(s)-1] == '.') {
		s = s[:len(s)-1]
	}
	return s
}

// ClaimName is the PVC the StatefulSet controller makes for a claim template and
// an ordinal.
func ClaimName(claimTemplate, statefulSet string, ordinal int32) string {
	return fmt.Sprintf("%s-%s-%d", claimTemplate, statefulSet, ordinal)
}

// Replicas is spec.replicas with the API default of 1.
func Replicas(sts *appsv1.StatefulSet) int32 {
	if sts.Spec.Replicas == nil {
		return 1
	}
	return *sts.Spec.Replicas
}

// StartOrdinal is the first ordinal of the StatefulSet (spec.ordinals.start).
func StartOrdinal(sts *appsv1.StatefulSet) int32 {
	if sts.Spec.Ordinals == nil {
		return 0
	}
	return sts.Spec.Ordinals.Start
}

// Count is n of a noun, singular or plural as n asks: "1 snapshot", "3 snapshots".
func Count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
