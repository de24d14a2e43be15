// Package execbinder makes `kubectl exec` into a pod on a kwok node run in that
// pod's volume directory.
//
// kwok runs exec commands locally, as its Exec and ClusterExec resources say, but
// a rule cannot name a per-pod directory. The binder watches pods and, for each,
// keeps an Exec named after the pod whose working directory is the host directory
// behind the pod's first PVC (the hostpath CSI driver's volume), with POD_NAME,
// POD_NAMESPACE, VOLUME_DIR and the container's literal env values set ($(VAR)
// references to those expanded, as in a real pod), run as the pod's or
// container's runAsUser and runAsGroup. It then
// annotates the pod with AnnotationExecDir; the stack's pod-ready stage waits for
// that annotation, so a pod that is Ready can be exec'd into at once.
//
// It is test infrastructure for the local stack, never shipped.
package execbinder
