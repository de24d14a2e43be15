package webhook

import (
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/json"
)

var (
	statefulSetKind = appsv1.SchemeGroupVersion.WithKind("StatefulSet")
	scaleKind       = autoscalingv1.SchemeGroupVersion.WithKind("Scale")
)

// kinded is what decode can check the kind of: an object that embeds
// metav1.TypeMeta.
type kinded interface{ GetObjectKind() schema.ObjectKind }

// decode reads one object of a request into into, which must be of kind want.
//
// The API server sends the objects as JSON, in the version the rules name
// (matchPolicy Equivalent converts to it), so the bytes are unmarshalled
// directly, case-sensitively and keeping integers, as the API server's own
// JSON serializer does. The universal deserializer, through
// admission.Decoder, first parses each object a second time to find its kind:
// for a StatefulSet with its managedFields and status, as the API server sends
// it, that was 43% of the time to decode it, and a template change carries two.
func decode(raw runtime.RawExtension, into kinded, want schema.GroupVersionKind) error {
	if len(raw.Raw) == 0 {
		return errors.New("the request carries no object")
	}
	if err := json.UnmarshalCaseSensitivePreserveInts(raw.Raw, into); err != nil {
		return err
	}
	if got := into.GetObjectKind().GroupVersionKind(); !got.Empty() && got != want {
		return fmt.Errorf("the request carries a %s, want a %s", got, want)
	}
	return nil
}

// decodeStatefulSet is decode for a StatefulSet, without its
// metadata.managedFields.
//
// The API server sends every object with its managedFields, which nothing in
// snapgate reads (the cache strips them too): for one of make bench's
// StatefulSets they were the largest part of the object to build. Skipping
// them still checks that the JSON is well-formed.
func decodeStatefulSet(raw runtime.RawExtension, into *appsv1.StatefulSet) error {
	var wire statefulSetWire
	if err := decode(raw, &wire, statefulSetKind); err != nil {
		return err
	}
	*into = appsv1.StatefulSet{TypeMeta: wire.TypeMeta, ObjectMeta: wire.Metadata.ObjectMeta, Spec: wire.Spec, Status: wire.Status}
	return nil
}

// statefulSetWire is appsv1.StatefulSet with its managedFields left unbuilt.
type statefulSetWire struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        objectMetaWire           `json:"metadata"`
	Spec            appsv1.StatefulSetSpec   `json:"spec"`
	Status          appsv1.StatefulSetStatus `json:"status"`
}

// objectMetaWire is metav1.ObjectMeta whose managedFields are skipped: a field
// of the outer struct wins over the embedded one of the same JSON name.
type objectMetaWire struct {
	metav1.ObjectMeta
	ManagedFields skippedJSON `json:"managedFields"`
}

// skippedJSON is a value the decoder scans past without building it.
type skippedJSON struct{}

// UnmarshalJSON keeps nothing.
func (*skippedJSON) UnmarshalJSON([]byte) error { return nil }
