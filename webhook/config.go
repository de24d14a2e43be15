package webhook

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"slices"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

// Paths the handlers are served at.
const (
	GuardPath    = "/guard"
	ValidatePath = "/validate"
)

// ConfigOptions say where the API server reaches snapgate and what it never sends.
type ConfigOptions struct {
	// Name names both configurations; default "snapgate".
	Name string
	// Namespace is snapgate's own namespace, never matched (nor is kube-system).
	Namespace string
	// Namespaces, when set, are the only namespaces matched (a namespaced
	// install).
	Namespaces []string
	// URL reaches snapgate outside the cluster (local runs); Service inside it.
	URL     string
	Service *admissionregistrationv1.ServiceReference
	// CABundle verifies snapgate's serving certificate.
	CABundle []byte
	// TimeoutSeconds is the API server's limit for one call; default and max 30.
	TimeoutSeconds int32
}

func (o *ConfigOptions) setDefaults() {
	if o.Name == "" {
		o.Name = "snapgate"
	}
	if o.TimeoutSeconds <= 0 || o.TimeoutSeconds > 30 {
		o.TimeoutSeconds = 30
	}
}

// The CEL conditions that keep requests which cannot need a snapshot away from
// the webhook (status, labels, unrelated metadata, scale-ups).
const (
	// MayNeedSnapshot: a delete, a new pod template, fewer replicas, or any
	// update while a rollback runs.
	MayNeedSnapshot = "request.operation == 'DELETE' || object.spec.template != oldObject.spec.template || " +
		"(has(object.spec.replicas) ? object.spec.replicas : 1) < (has(oldObject.spec.replicas) ? oldObject.spec.replicas : 1) || " +
		"(" + InRollback + ")"
	// InRollback: a rollback is recorded and has not ended; every change of the
	// template or replicas then reaches the guard, which denies the user's.
	InRollback = "has(oldObject.metadata.annotations) && '" + policy.RollbackStatus + "' in oldObject.metadata.annotations && " +
		"!oldObject.metadata.annotations['" + policy.RollbackStatus + "'].matches('\"phase\":\"(Succeeded|Failed)\"')"
	// ScaleChanged: a Scale carries no annotations, so every change of replicas
	// reaches the guard, which reads the StatefulSet (a scale-up, to deny it
	// during a rollback). A Scale omits replicas when they are 0.
	ScaleChanged = "(has(object.spec.replicas) ? object.spec.replicas : 0) != (has(oldObject.spec.replicas) ? oldObject.spec.replicas : 0)"
	// HasSnapgateAnnotations: only objects that carry snapgate's annotations are validated.
	HasSnapgateAnnotations = "has(object.metadata.annotations) && object.metadata.annotations.exists(k, k.startsWith('" + policy.Prefix + "'))"
	// SnapgateAnnotationsChanged: ... and only when one of them is new or changed.
	SnapgateAnnotationsChanged = "request.operation == 'CREATE' || !has(oldObject.metadata.annotations) || " +
		"object.metadata.annotations.exists(k, k.startsWith('" + policy.Prefix + "') && " +
		"(!(k in oldObject.metadata.annotations) || oldObject.metadata.annotations[k] != object.metadata.annotations[k]))"
)

// Configurations returns the mutating and validating webhook configurations.
//
// A StatefulSet opts in by its own label or its namespace's; a webhook cannot OR
// two selectors, so each route comes twice with disjoint selectors (never both
// called for one request). The scale subresource carries no labels: its routes
// select by namespace only, and the handler reads the parent's label. Outside
// guarded namespaces that means every scale-down reaches snapgate, so that route
// fails open (Ignore) — a scale-down deletes no data unless the retention policy
// says so — while every route that selects guarded objects fails closed.
//
// It is one function of about 70 lines on purpose: the five routes read best
// side by side, as the chart's generated template shows them.
func Configurations(o ConfigOptions) (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration) {
	o.setDefaults()
	excluded := metav1.LabelSelectorRequirement{
		Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: policy.ProtectedNamespaces(o.Namespace),
	}
	scope := []metav1.LabelSelectorRequirement{excluded}
	if len(o.Namespaces) > 0 {
		scope = append(scope, metav1.LabelSelectorRequirement{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: o.Namespaces})
	}
	guardedNS := &metav1.LabelSelector{MatchExpressions: append(slices.Clone(scope),
		metav1.LabelSelectorRequirement{Key: policy.GuardLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{"enabled"}})}
	otherNS := &metav1.LabelSelector{MatchExpressions: append(slices.Clone(scope),
		metav1.LabelSelectorRequirement{Key: policy.GuardLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"enabled"}})}
	guardedObj := &metav1.LabelSelector{MatchLabels: map[string]string{policy.GuardLabel: "enabled"}}
	notDisabledObj := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: policy.GuardLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"disabled"}},
	}}

	sts := rules([]admissionregistrationv1.OperationType{admissionregistrationv1.Update, admissionregistrationv1.Delete}, "statefulsets")
	scale := rules([]admissionregistrationv1.OperationType{admissionregistrationv1.Update}, "statefulsets/scale")
	stsCond := []admissionregistrationv1.MatchCondition{{Name: "may-need-snapshot", Expression: MayNeedSnapshot}}
	scaleCond := []admissionregistrationv1.MatchCondition{{Name: "scale-changed", Expression: ScaleChanged}}

	mutating := func(name string, r []admissionregistrationv1.RuleWithOperations, ns, obj *metav1.LabelSelector,
		conds []admissionregistrationv1.MatchCondition, fail admissionregistrationv1.FailurePolicyType) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{
			Name:                    name,
			ClientConfig:            o.clientConfig(GuardPath),
			Rules:                   r,
			FailurePolicy:           &fail,
			MatchPolicy:             ptr(admissionregistrationv1.Equivalent),
			NamespaceSelector:       ns,
			ObjectSelector:          obj,
			SideEffects:             ptr(admissionregistrationv1.SideEffectClassNoneOnDryRun),
			TimeoutSeconds:          ptr(o.TimeoutSeconds),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      ptr(admissionregistrationv1.NeverReinvocationPolicy),
			MatchConditions:         conds,
		}
	}
	m := &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Labels: map[string]string{"app.kubernetes.io/name": "snapgate"}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			mutating("statefulsets.guard.snapgate.io", sts, otherNS, guardedObj, stsCond, admissionregistrationv1.Fail),
			mutating("statefulsets-in-namespace.guard.snapgate.io", sts, guardedNS, notDisabledObj, stsCond, admissionregistrationv1.Fail),
			mutating("scale.guard.snapgate.io", scale, otherNS, nil, scaleCond, admissionregistrationv1.Ignore),
			mutating("scale-in-namespace.guard.snapgate.io", scale, guardedNS, nil, scaleCond, admissionregistrationv1.Fail),
		},
	}
	fail := admissionregistrationv1.Fail
	v := &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Labels: map[string]string{"app.kubernetes.io/name": "snapgate"}},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:         "annotations.validate.snapgate.io",
			ClientConfig: o.clientConfig(ValidatePath),
			Rules: rules([]admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				"statefulsets"),
			FailurePolicy:           &fail,
			MatchPolicy:             ptr(admissionregistrationv1.Equivalent),
			NamespaceSelector:       &metav1.LabelSelector{MatchExpressions: slices.Clone(scope)},
			SideEffects:             ptr(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds:          ptr(int32(5)),
			AdmissionReviewVersions: []string{"v1"},
			MatchConditions: []admissionregistrationv1.MatchCondition{
				{Name: "has-snapgate-annotations", Expression: HasSnapgateAnnotations},
				{Name: "snapgate-annotations-changed", Expression: SnapgateAnnotationsChanged},
			},
		}},
	}
	return m, v
}

func (o *ConfigOptions) clientConfig(path string) admissionregistrationv1.WebhookClientConfig {
	cc := admissionregistrationv1.WebhookClientConfig{CABundle: o.CABundle}
	if o.Service != nil {
		svc := *o.Service
		svc.Path = ptr(path)
		cc.Service = &svc
	} else {
		cc.URL = ptr(o.URL + path)
	}
	return cc
}

func rules(ops []admissionregistrationv1.OperationType, resource string) []admissionregistrationv1.RuleWithOperations {
	return []admissionregistrationv1.RuleWithOperations{{
		Operations: ops,
		Rule: admissionregistrationv1.Rule{
			APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{resource},
			Scope: ptr(admissionregistrationv1.NamespacedScope),
		},
	}}
}

func ptr[T any](v T) *T { return &v }
