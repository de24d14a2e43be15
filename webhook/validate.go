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
type Validator struct {
	Decoder admission.Decoder
}

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
	if err := v.Decoder.DecodeRaw(req.Object, &sts); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode StatefulSet: %w", err))
	}
	p, errs := policy.Parse(&sts)
	if len(errs) > 0 {
		return admission.Denied(fmt.Sprintf("snapgate: statefulset %s has bad snapgate annotations: %s", sts.Name, errs.ToAggregate()))
	}
	if p.RollbackTo != "" {
		// Said where the user acts, not only in the README.
		return admission.Allowed("").WithWarnings(fmt.Sprintf("snapgate: this version has no rollback controller yet, so nothing acts on %s=%s; "+
			"restore PVCs from the set's VolumeSnapshots with a dataSource instead (`snapgate list sts/%s` shows them)", policy.RollbackTo, p.RollbackTo, sts.Name))
	}
	return admission.Allowed("")
}
