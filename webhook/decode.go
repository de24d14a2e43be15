package webhook

import (
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/json"
)

var (
	statefulSetKind = appsv1.SchemeGroupVersion.WithKind("StatefulSet")
	scaleKind       = autoscalingv1.SchemeGroupVersion.WithKind("Scale")
)

// decode reads one object of a request into into, which must be of kind want.
//
// The API server sends the objects as JSON, in the version the rules name
// (matchPolicy Equivalent converts to it), so the bytes are unmarshalled
// directly, case-sensitively and keeping integers, as the API server's own
// JSON serializer does. The universal deserializer, through
// admission.Decoder, first parses each object a second time to find its kind:
// for a StatefulSet with its managedFields and status, as the API server sends
// it, that was 43% of the time to decode it, and a template change carries two.
func decode(raw runtime.RawExtension, into runtime.Object, want schema.GroupVersionKind) error {
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
