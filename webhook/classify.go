package webhook

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// RestartedAt is the pod template annotation `kubectl rollout restart` sets.
const RestartedAt = "kubectl.kubernetes.io/restartedAt"

// Classify names what an update of a StatefulSet does to its data: a new pod
// template (every replica is restarted on it), a restart on the same template
// (`kubectl rollout restart`), fewer replicas (the removed ones lose their pods
// and, under a Delete retention policy, their PVCs), or nothing that needs a
// snapshot (""). A template change that also scales down is a template change:
// it touches every replica, the removed ones included.
func Classify(old, new *appsv1.StatefulSet) policy.Reason {
	if !equality.Semantic.DeepEqual(old.Spec.Template, new.Spec.Template) {
		if !onlyRestarted(&old.Spec.Template, &new.Spec.Template) {
			return policy.ReasonTemplate
		}
		if snapshotter.Replicas(new) < snapshotter.Replicas(old) {
			return policy.ReasonScaleDown // the restart itself changes no data
		}
		return policy.ReasonRestart
	}
	if snapshotter.Replicas(new) < snapshotter.Replicas(old) {
		return policy.ReasonScaleDown
	}
	return ""
}

// onlyRestarted reports whether two templates differ in RestartedAt alone.
func onlyRestarted(old, new *corev1.PodTemplateSpec) bool {
	if old.Annotations[RestartedAt] == new.Annotations[RestartedAt] {
		return false
	}
	o, n := old.DeepCopy(), new.DeepCopy()
	delete(o.Annotations, RestartedAt)
	delete(n.Annotations, RestartedAt)
	if len(o.Annotations) == 0 {
		o.Annotations = nil
	}
	if len(n.Annotations) == 0 {
		n.Annotations = nil
	}
	return equality.Semantic.DeepEqual(o, n)
}
