package restore

import (
	"context"
	"fmt"
	"sort"
	"strings"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/rollback"
)

// Plan reads set's snapshots in namespace from and plans its copy as the
// StatefulSet into. It is an error, naming each, when anything the copy would
// create exists, or when the copy's pods would need a Secret, ConfigMap or
// ServiceAccount its namespace lacks.
func Plan(ctx context.Context, c client.Reader, set, from string, into types.NamespacedName) (*rollback.Copy, error) {
	snaps, err := snapshotter.PerPVC{Snapshots: c}.List(ctx, from, client.MatchingLabels{snapshotter.LabelSet: set, snapshotter.LabelManagedBy: snapshotter.ManagedBy})
	if err != nil {
		return nil, fmt.Errorf("list snapshots of set %s: %w", set, err)
	}
	if into.Namespace != from {
		if err := c.Get(ctx, types.NamespacedName{Name: into.Namespace}, &corev1.Namespace{}); err != nil {
			return nil, fmt.Errorf("namespace %s, the copy's: %w", into.Namespace, err)
		}
	}
	cp, err := rollback.CopyOf(set, snaps, into, func(vs *snapv1.VolumeSnapshot) (*snapv1.VolumeSnapshotContent, error) {
		if vs.Status == nil || vs.Status.BoundVolumeSnapshotContentName == nil {
			return nil, fmt.Errorf("it is bound to no content")
		}
		var content snapv1.VolumeSnapshotContent
		return &content, c.Get(ctx, types.NamespacedName{Name: *vs.Status.BoundVolumeSnapshotContentName}, &content)
	})
	if err != nil {
		return nil, err
	}
	// The StatefulSet first: a restore into a name used before finds it.
	objs := objects(cp)
	for i := len(objs) - 1; i >= 0; i-- {
		if err := absent(ctx, c, objs[i]); err != nil {
			return nil, err
		}
	}
	if into.Namespace != from {
		if err := references(ctx, c, cp); err != nil {
			return nil, err
		}
	}
	if err := uncaptured(ctx, c, cp); err != nil {
		return nil, err
	}
	return cp, nil
}

// uncaptured is an error naming each PV that Kubernetes would bind one of the
// copy's PVCs to in place of its snapshot.
func uncaptured(ctx context.Context, c client.Reader, cp *rollback.Copy) error {
	captures, err := rollback.CapturingVolumes(ctx, c, cp.Claims)
	if err != nil {
		return err
	}
	if len(captures) > 0 {
		return fmt.Errorf("the copy's PVCs would not hold their snapshots' data: %s, then restore again", captures)
	}
	return nil
}

// objects are everything the copy creates, in the order it creates them.
func objects(cp *rollback.Copy) []client.Object {
	var objs []client.Object
	for _, k := range cp.Carried {
		objs = append(objs, k.Content, k.Snapshot)
	}
	for _, p := range cp.Claims {
		objs = append(objs, p)
	}
	return append(objs, cp.StatefulSet)
}

// absent is an error when an object of o's kind and name is there: a restore
// never overwrites.
func absent(ctx context.Context, c client.Reader, o client.Object) error {
	probe, ok := o.DeepCopyObject().(client.Object)
	if !ok {
		return fmt.Errorf("%T is no object", o)
	}
	err := c.Get(ctx, client.ObjectKeyFromObject(o), probe)
	switch {
	case err == nil:
		return fmt.Errorf("%s exists; a restore never overwrites: choose another --into, or delete it first", describe(o))
	case apierrors.IsNotFound(err):
		return nil
	}
	return fmt.Errorf("look for %s: %w", describe(o), err)
}

// describe names an object as the messages do: "statefulset db/pg-copy".
func describe(o client.Object) string {
	kind := map[string]string{"*v1.StatefulSet": "statefulset", "*v1.PersistentVolumeClaim": "PVC",
		"*v1.VolumeSnapshot": "volumesnapshot", "*v1.VolumeSnapshotContent": "volumesnapshotcontent"}[fmt.Sprintf("%T", o)]
	if o.GetNamespace() == "" {
		return kind + " " + o.GetName()
	}
	return kind + " " + o.GetNamespace() + "/" + o.GetName()
}

// references is an error naming every object of the copy's namespace that its
// pods need and that is not there: the StatefulSet would be created and its
// pods would never start.
func references(ctx context.Context, c client.Reader, cp *rollback.Copy) error {
	ns := cp.StatefulSet.Namespace
	var missing []string
	for _, r := range rollback.References(&cp.StatefulSet.Spec.Template) {
		var obj client.Object
		switch r.Kind {
		case "Secret":
			obj = &corev1.Secret{}
		case "ConfigMap":
			obj = &corev1.ConfigMap{}
		default:
			obj = &corev1.ServiceAccount{}
		}
		err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: r.Name}, obj)
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, fmt.Sprintf("%s %s (%s)", strings.ToLower(r.Kind), r.Name, r.By))
		case err != nil:
			return fmt.Errorf("look for %s %s/%s: %w", strings.ToLower(r.Kind), ns, r.Name, err)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("the copy's pods need what namespace %s does not have: %s; create them there first (the original's are in its namespace), then restore again",
			ns, strings.Join(missing, ", "))
	}
	return nil
}

// Create creates the copy: the carried snapshots first, waited for until they
// are ready (the PVCs restore from them), then the PVCs, then the StatefulSet,
// which the API server is asked first in a dry run so that a StatefulSet it
// would refuse leaves nothing behind. Each created object is told to created.
func Create(ctx context.Context, c client.Client, w Waiter, cp *rollback.Copy, created func(string)) error {
	if err := c.Create(ctx, cp.StatefulSet.DeepCopy(), client.DryRunAll); err != nil {
		return fmt.Errorf("statefulset %s would be refused: %w", cp.StatefulSet.Name, err)
	}
	for _, k := range cp.Carried {
		for _, o := range []client.Object{k.Content, k.Snapshot} {
			if err := c.Create(ctx, o); err != nil {
				return fmt.Errorf("create %s, a copy of snapshot %s: %w (what was created before it is left: %s)", describe(o), k.From, err, Cleanup(cp))
			}
		}
		created(fmt.Sprintf("Created %s, a copy of snapshot %s (deletion policy Retain).", describe(k.Snapshot), k.From))
	}
	if err := w.WaitReady(ctx, cp.Carried); err != nil {
		return fmt.Errorf("%w (delete what was created: %s)", err, Cleanup(cp))
	}
	// Plan checked too; a PV may have become Available while the copies readied.
	if err := uncaptured(ctx, c, cp); err != nil {
		return fmt.Errorf("%w (what was created before: %s)", err, Cleanup(cp))
	}
	for _, pvc := range cp.Claims {
		if err := c.Create(ctx, pvc); err != nil {
			return fmt.Errorf("create PVC %s from snapshot %s: %w (what was created before it is left: %s)", pvc.Name, pvc.Spec.DataSource.Name, err, Cleanup(cp))
		}
		created(fmt.Sprintf("Created PVC %s/%s from snapshot %s.", pvc.Namespace, pvc.Name, pvc.Spec.DataSource.Name))
	}
	if err := c.Create(ctx, cp.StatefulSet); err != nil {
		return fmt.Errorf("create statefulset %s: %w (its PVCs were created; create the StatefulSet again, or delete them: %s)", cp.StatefulSet.Name, err, Cleanup(cp))
	}
	return nil
}

// Delete deletes every object of the copy that is there, the StatefulSet
// first (so no pod of it holds a PVC again) and the carried snapshots' contents
// last (Retain: the original's data stays).
func Delete(ctx context.Context, c client.Client, cp *rollback.Copy) error {
	objs := objects(cp)
	for i := len(objs) - 1; i >= 0; i-- {
		if err := c.Delete(ctx, objs[i], client.PropagationPolicy("Background")); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %s: %w", describe(objs[i]), err)
		}
	}
	return nil
}

// Cleanup is the kubectl commands that delete the copy.
func Cleanup(cp *rollback.Copy) string {
	ns := cp.StatefulSet.Namespace
	cmds := []string{fmt.Sprintf("kubectl delete statefulset/%s -n %s", cp.StatefulSet.Name, ns)}
	var pvcs []string
	for _, p := range cp.Claims {
		pvcs = append(pvcs, "pvc/"+p.Name)
	}
	cmds = append(cmds, fmt.Sprintf("kubectl delete %s -n %s", strings.Join(pvcs, " "), ns))
	if len(cp.Carried) > 0 {
		set := cp.Carried[0].Snapshot.Labels[snapshotter.LabelCopyOf]
		cmds = append(cmds, fmt.Sprintf("kubectl delete volumesnapshot -n %s -l %s=%s", ns, snapshotter.LabelCopyOf, set),
			fmt.Sprintf("kubectl delete volumesnapshotcontent -l %s=%s", snapshotter.LabelCopyOf, set))
	}
	return strings.Join(cmds, "; ")
}

// Waiter waits for carried snapshots to be ready.
type Waiter struct {
	// Snapshots reads snapgate's VolumeSnapshots from a cache that Changes
	// is fed by.
	Snapshots client.Reader
	Changes   *snapshotter.Tracker
}

// WaitReady returns once every carried snapshot is ready to use (at once when
// there are none), or with the error the snapshot controller reports for one.
func (w Waiter) WaitReady(ctx context.Context, carried []rollback.Carried) error {
	for len(carried) > 0 {
		changed := w.Changes.Changed()
		pending := ""
		for _, k := range carried {
			var vs snapv1.VolumeSnapshot
			err := w.Snapshots.Get(ctx, client.ObjectKeyFromObject(k.Snapshot), &vs)
			switch {
			case apierrors.IsNotFound(err):
				pending = k.Snapshot.Name
				continue
			case err != nil:
				return fmt.Errorf("read %s: %w", describe(k.Snapshot), err)
			}
			if st := vs.Status; st != nil && st.Error != nil && st.Error.Message != nil {
				return fmt.Errorf("%s, a copy of snapshot %s: %s", describe(k.Snapshot), k.From, *st.Error.Message)
			}
			if st := vs.Status; st == nil || st.ReadyToUse == nil || !*st.ReadyToUse {
				pending = k.Snapshot.Name
			}
		}
		if pending == "" {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("volumesnapshot %s/%s, a copy, is not ready: %w", carried[0].Snapshot.Namespace, pending, ctx.Err())
		}
	}
	return nil
}
