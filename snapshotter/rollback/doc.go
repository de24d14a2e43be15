// Package rollback restores a StatefulSet from one of its snapshot sets: the
// data of every replica the set covers, the pod template and the replica count,
// as they were when the set was taken. A leader-elected controller does it in
// resumable steps, asked by the snapgate.io/rollback-to annotation.
package rollback
