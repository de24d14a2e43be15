package webhook

import (
	"context"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

// Validator is the validating admission handler for snapgate's own annotations
// on StatefulSets: a bad value is denied with a message that names the
// annotation, the value and what is allowed, before it can mislead the guard.
type Validator struct{}

var _ admission.Handler = (*Validator)(nil)

// Handle implements admission.Handler.
func (v *Validator) Handle(_ context.Context, req admission.Request) admission.Response {
	if req.Resource.Group != appsv1.GroupName || req.Resource.Resource != "statefulsets" || req.SubResource != "" {
		return admission.Allowed("")
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	var sts appsv1.StatefulSet
	if err := decode(req.Object, &sts, statefulSetKind); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode StatefulSet: %w", err))
	}
	p, errs := policy.Parse(&sts)
	if len(errs) > 0 {
		return admission.Denied(fmt.Sprintf("snapgate: statefulset %s has bad snapgate annotations: %s", sts.Name, errs.ToAggregate()))
	}
	if p.RollbackTo != "" && p.RollbackTo != v.oldRollbackTo(req) {
		// Said where the user acts: a rollback takes the StatefulSet down.
		return admission.Allowed("").WithWarnings(fmt.Sprintf("snapgate: rolling statefulset %s back to %s: a safety set of the current data is taken, "+
			"the StatefulSet is scaled to 0, its PVCs are replaced by copies of the set (the old volumes are kept, reclaim policy Retain), "+
			"then the recorded pod template and replicas come back; follow it with `kubectl snapgate rollback sts/%s -n %s --wait`",
			sts.Name, p.RollbackTo, sts.Name, sts.Namespace))
	}
	return admission.Allowed("")
}

// oldRollbackTo is the rollback target before an update, to warn only when a
// request sets a new one.
func (v *Validator) oldRollbackTo(req admission.Request) string {
	if req.Operation != admissionv1.Update || len(req.OldObject.Raw) == 0 {
		return ""
	}
	var old appsv1.StatefulSet
	if err := decode(req.OldObject, &old, statefulSetKind); err != nil {
		return ""
	}
	return old.Annotations[policy.RollbackTo]
}
