package webhook

import (
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// Classify names what an update of a StatefulSet does to its data: a new pod
// template (every replica is restarted on it), fewer replicas (the removed ones
// lose their pods and, under a Delete retention policy, their PVCs), or nothing
// that needs a snapshot (""). A change that does both is a template change: it
// touches every replica, the removed ones included.
func Classify(old, new *appsv1.StatefulSet) policy.Reason {
	if !equality.Semantic.DeepEqual(old.Spec.Template, new.Spec.Template) {
		return policy.ReasonTemplate
	}
	if snapshotter.Replicas(new) < snapshotter.Replicas(old) {
		return policy.ReasonScaleDown
	}
	return ""
}
