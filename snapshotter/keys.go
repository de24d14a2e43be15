package snapshotter

import "github.com/snapgate/snapgate/snapshotter/policy"

// Every label and annotation snapgate writes on the objects it makes or
// touches (snapshots, restored PVCs, replaced PVs, in-flight records) is
// defined here, once; the annotations users set on a StatefulSet, and the
// record snapgate writes there, are policy's.

// Labels on every VolumeSnapshot snapgate creates. The labels are the source of
// truth about a set: annotations on the StatefulSet are a convenience that a later
// `kubectl apply` may drop.
const (
	LabelSet         = policy.Prefix + "set"
	LabelStatefulSet = policy.Prefix + "statefulset"
	LabelOrdinal     = policy.Prefix + "ordinal"
	LabelClaim       = policy.Prefix + "claim"
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	// ManagedBy is the value of LabelManagedBy.
	ManagedBy = "snapgate"
)

// Annotations on every VolumeSnapshot: what a restore needs.
const (
	AnnotationReason         = policy.Prefix + "reason"
	AnnotationReplicasBefore = policy.Prefix + "replicas-before"
	AnnotationReplicasAfter  = policy.Prefix + "replicas-after"
	AnnotationRevision       = policy.Prefix + "controller-revision"
	// AnnotationPodTemplate is on one snapshot of a set: the pod template of
	// before the change, which a rollback restores. The set's other snapshots
	// carry AnnotationPodTemplateDigest (template.go says why).
	AnnotationPodTemplate = policy.Prefix + "pod-template"
	// AnnotationPodTemplateDigest is TemplateDigest of the set's pod template.
	AnnotationPodTemplateDigest = policy.Prefix + "pod-template-sha256"
	AnnotationPVCSpec           = policy.Prefix + "pvc-spec"
	AnnotationStatefulSetUID    = policy.Prefix + "statefulset-uid"
	// AnnotationStatefulSetName is the StatefulSet's name, which its label
	// holds cut and hashed when it is longer than a label value.
	AnnotationStatefulSetName = policy.Prefix + "statefulset-name"
	AnnotationRequestedBy     = policy.Prefix + "requested-by"
	// AnnotationGeneration is the StatefulSet's generation the set was taken
	// from: it orders sets, where creation times (whole seconds) may tie.
	AnnotationGeneration = policy.Prefix + "statefulset-generation"
	// AnnotationTakenAt is when the set was started, to the nanosecond:
	// creation times are whole seconds, and sets taken on demand can tie.
	AnnotationTakenAt = policy.Prefix + "taken-at"
	// AnnotationRecordPending marks a set whose change could not carry the record
	// itself (a scale through the scale subresource): the Recorder writes it onto
	// the StatefulSet once the change is stored.
	AnnotationRecordPending = policy.Prefix + "record-pending"
	// AnnotationLeftOut lists (comma-separated) the affected PVCs the set does
	// not have because they held no data: a rollback leaves them as they are.
	AnnotationLeftOut = policy.Prefix + "left-out"
	// AnnotationWaitFor is on the snapshots of a set whose change was admitted
	// once it was cut ("cut"): it is followed to ready after admission.
	AnnotationWaitFor = policy.Prefix + "wait-for"
	// AnnotationFollowed is what following the set to ready found: "ready"
	// (of a set admitted at cut), "failed" or "overdue" (not ready by the
	// ready deadline). It is written once per finding, so that each is told once.
	AnnotationFollowed = policy.Prefix + "followed"
)

// Findings of following a set to ready (AnnotationFollowed).
const (
	FollowedReady   = "ready"
	FollowedFailed  = "failed"
	FollowedOverdue = "overdue"
)

// Keys of group snapshots.
const (
	// LabelGroup is on the PVCs of a VolumeGroupSnapshot snapgate creates:
	// the group's name, which its selector matches.
	LabelGroup = policy.Prefix + "group"
	// AnnotationGroup is on each member snapshot: its VolumeGroupSnapshot.
	AnnotationGroup = policy.Prefix + "group"
)

// Keys on the snapshots `snapgate restore --into` carries into another
// namespace, and on their contents.
const (
	// LabelCopyOf is the set a carried snapshot is a copy of.
	LabelCopyOf = policy.Prefix + "copy-of"
	// AnnotationCopyOf is the snapshot it is a copy of, "namespace/name".
	AnnotationCopyOf = policy.Prefix + "copy-of"
)

// Keys of a verify: on every snapshot of the set it verified, and on the
// scratch copy it restored the set as.
const (
	// AnnotationVerified is the outcome of the set's last verify: VerifyPassed
	// or VerifyFailed.
	AnnotationVerified = policy.Prefix + "verified"
	// AnnotationVerifiedAt is when it ended (RFC 3339).
	AnnotationVerifiedAt = policy.Prefix + "verified-at"
	// AnnotationVerifiedHow says what was checked, and what failed.
	AnnotationVerifiedHow = policy.Prefix + "verified-how"
	// LabelVerifyOf is on a verify's scratch StatefulSet and PVCs: the set
	// it verifies, so that one left behind is found.
	LabelVerifyOf = policy.Prefix + "verify-of"
)

// Outcomes of a verify (AnnotationVerified).
const (
	VerifyPassed = "passed"
	VerifyFailed = "failed"
)

// Annotations snapgate writes during a rollback.
const (
	// AnnotationRestoredFrom is on a PVC a rollback made: the snapshot it holds.
	AnnotationRestoredFrom = policy.Prefix + "restored-from"
	// AnnotationRollbackID is on a PVC a rollback made, and on a PV whose data
	// a rollback replaced: which rollback (RollbackState.ID).
	AnnotationRollbackID = policy.Prefix + "rollback-id"
	// AnnotationReplacedClaim is on a PV whose data a rollback replaced: the
	// PVC it was bound to, so an operator can find the old data.
	AnnotationReplacedClaim = policy.Prefix + "replaced-claim"
)

// Keys of the records of post-hooks in flight (Leases in snapgate's namespace).
const (
	// AnnotationOwed, on an in-flight record, lists the post-hooks still owed.
	AnnotationOwed = policy.Prefix + "owed-post-hooks"
	// LabelComponent marks snapgate's in-flight records among the Leases.
	LabelComponent = policy.Prefix + "component"
	// ComponentInFlight is LabelComponent's value on an in-flight record.
	ComponentInFlight = "in-flight-hooks"
)
