package rollback

import (
	"context"
	"strings"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// SetupWithManager registers the controller on StatefulSets that ask for a
// rollback or are in one, and wakes a waiting step on what it waits for: a
// pod or PVC deleted, a safety set's snapshot changed. It watches metadata
// only (a cluster may hold thousands of StatefulSets, pods and PVCs) and maps
// an event to a StatefulSet only when that one is in a rollback.
func (c *Controller) SetupWithManager(mgr ctrl.Manager) error {
	if c.Cache == nil {
		c.Cache = mgr.GetCache()
	}
	asked := predicate.NewPredicateFuncs(func(o client.Object) bool {
		st, _ := policy.ParseRollbackState(o.GetAnnotations())
		_, trigger := o.GetAnnotations()[policy.RollbackTo]
		return trigger || st.InProgress()
	})
	deleted := predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("rollback").
		For(&appsv1.StatefulSet{}, builder.OnlyMetadata, builder.WithPredicates(asked)).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(c.podOwner), builder.OnlyMetadata, builder.WithPredicates(deleted)).
		Watches(&corev1.PersistentVolumeClaim{}, handler.EnqueueRequestsFromMapFunc(c.claimOwners), builder.OnlyMetadata, builder.WithPredicates(deleted)).
		Watches(&snapv1.VolumeSnapshot{}, handler.EnqueueRequestsFromMapFunc(c.safetySetOwner)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(c)
}

// PodMetadata is the metadata-only Pod the controller watches, for the cache's
// options.
func PodMetadata() *metav1.PartialObjectMetadata {
	return metadataOf(corev1.SchemeGroupVersion.WithKind("Pod"))
}

// ClaimMetadata is the metadata-only PVC the controller watches, for the
// cache's options.
func ClaimMetadata() *metav1.PartialObjectMetadata {
	return metadataOf(corev1.SchemeGroupVersion.WithKind("PersistentVolumeClaim"))
}

// PodMetadataList lists pods as metadata.
func PodMetadataList() *metav1.PartialObjectMetadataList {
	l := &metav1.PartialObjectMetadataList{}
	l.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	return l
}

func metadataOf(gvk schema.GroupVersionKind) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(gvk)
	return m
}

// KeepOwnership is a cache transform that keeps of a watched pod or PVC only
// what tells whose it is and whether it is going: the cache of a large
// cluster's pods and PVCs stays small.
func KeepOwnership(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	m.ObjectMeta = metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		OwnerReferences: m.OwnerReferences, DeletionTimestamp: m.DeletionTimestamp,
	}
	return m, nil
}

// podOwner maps a deleted pod to its StatefulSet, if that one is in a
// rollback.
func (c *Controller) podOwner(ctx context.Context, o client.Object) []reconcile.Request {
	ref := metav1.GetControllerOfNoCopy(o)
	if ref == nil || ref.Kind != "StatefulSet" || ref.APIVersion != appsv1.SchemeGroupVersion.String() {
		return nil
	}
	return c.inRollback(ctx, o.GetNamespace(), ref.Name)
}

// claimOwners maps a deleted PVC to the StatefulSets of its namespace in a
// rollback whose PVCs it may be (named <template>-<statefulset>-<ordinal>).
// A PVC carries no owner unless its StatefulSet deletes PVCs with itself.
func (c *Controller) claimOwners(ctx context.Context, o client.Object) []reconcile.Request {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("StatefulSetList"))
	if err := c.Cache.List(ctx, list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, sts := range list.Items {
		st, _ := policy.ParseRollbackState(sts.Annotations)
		if st.InProgress() && strings.Contains(o.GetName(), "-"+sts.Name+"-") {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: sts.Namespace, Name: sts.Name}})
		}
	}
	return out
}

// safetySetOwner maps a change of a safety set's snapshot to its StatefulSet,
// if that one is in a rollback.
func (c *Controller) safetySetOwner(ctx context.Context, o client.Object) []reconcile.Request {
	vs, ok := o.(*snapv1.VolumeSnapshot)
	if !ok || vs.Annotations[snapshotter.AnnotationReason] != string(policy.ReasonRollback) {
		return nil
	}
	return c.inRollback(ctx, vs.Namespace, snapshotter.StatefulSetName(vs))
}

// inRollback is a request for the StatefulSet if its cached metadata says it
// is in a rollback.
func (c *Controller) inRollback(ctx context.Context, namespace, name string) []reconcile.Request {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	m := snapshotter.StatefulSetMetadata()
	if err := c.Cache.Get(ctx, key, m); err != nil {
		return nil
	}
	if st, _ := policy.ParseRollbackState(m.Annotations); !st.InProgress() {
		return nil
	}
	return []reconcile.Request{{NamespacedName: key}}
}
