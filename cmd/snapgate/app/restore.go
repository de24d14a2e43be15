package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/rollback"
)

// RestoreOptions configure `snapgate restore`.
type RestoreOptions struct {
	Kube *genericclioptions.ConfigFlags
	// Set is the snapshot set to restore.
	Set string
	// Into names the new StatefulSet.
	Into string
}

func newRestoreCommand() *cobra.Command {
	o := &RestoreOptions{Kube: genericclioptions.NewConfigFlags(true)}
	cmd := &cobra.Command{
		Use:   "restore set NAME --into STATEFULSET",
		Short: "Restore a snapshot set beside the live data, as a new StatefulSet of its own",
		Long: `Creates, from the set's snapshots, the PVCs of a new StatefulSet and that StatefulSet,
with the pod template and replicas recorded when the set was taken, its own labels (no
Service of the original selects it) and snapgate.io/guard: disabled. The StatefulSet the
set was taken of is not touched. Nothing that exists is overwritten.`,
		Example: `  snapgate restore set postgres-3f2a9c1d --into postgres-check -n db
  kubectl snapgate restore set/postgres-3f2a9c1d --into postgres-check`,
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := setArg(args)
			if err != nil {
				return err
			}
			o.Set = set
			if o.Into == "" {
				return errors.New("--into: name the new StatefulSet the set is restored as")
			}
			return o.Run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.Kube.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.Into, "into", "", "name of the new StatefulSet (it and its PVCs must not exist)")
	return cmd
}

// Run plans the copy, checks that nothing it would create exists, and creates
// the PVCs, then the StatefulSet.
func (o *RestoreOptions) Run(ctx context.Context, out io.Writer) error {
	_, ns, c, err := connect(o.Kube)
	if err != nil {
		return err
	}
	snaps, err := snapshotter.PerPVC{Snapshots: c}.List(ctx, ns, client.MatchingLabels{snapshotter.LabelSet: o.Set, snapshotter.LabelManagedBy: snapshotter.ManagedBy})
	if err != nil {
		return fmt.Errorf("list snapshots of set %s: %w", o.Set, err)
	}
	cp, err := rollback.CopyOf(o.Set, snaps, o.Into)
	if err != nil {
		return err
	}
	if err := exists(ctx, c, &appsv1.StatefulSet{}, "statefulset", ns, cp.StatefulSet.Name); err != nil {
		return err
	}
	for _, pvc := range cp.Claims {
		if err := exists(ctx, c, &corev1.PersistentVolumeClaim{}, "PVC", ns, pvc.Name); err != nil {
			return err
		}
	}
	// Asked of the API server first, admission included, so that a
	// StatefulSet it would refuse leaves no PVCs behind.
	if err := c.Create(ctx, cp.StatefulSet.DeepCopy(), client.DryRunAll); err != nil {
		return fmt.Errorf("statefulset %s would be refused: %w", cp.StatefulSet.Name, err)
	}
	for _, pvc := range cp.Claims {
		if err := c.Create(ctx, pvc); err != nil {
			return fmt.Errorf("create PVC %s from snapshot %s: %w (the PVCs created before it are left for you to delete)", pvc.Name, pvc.Spec.DataSource.Name, err)
		}
		fmt.Fprintf(out, "Created PVC %s from snapshot %s.\n", pvc.Name, pvc.Spec.DataSource.Name)
	}
	if err := c.Create(ctx, cp.StatefulSet); err != nil {
		return fmt.Errorf("create statefulset %s: %w (its PVCs were created; delete them, or create the StatefulSet again)", cp.StatefulSet.Name, err)
	}
	_, err = fmt.Fprintf(out, "Restored set %s as %s.\nWatch it start: kubectl rollout status statefulset/%s -n %s\nWhen done: kubectl delete statefulset/%s -n %s, then its PVCs (%s).\n",
		o.Set, cp, cp.StatefulSet.Name, ns, cp.StatefulSet.Name, ns, claimNames(cp))
	return err
}

// exists is an error when an object of that name is there: a restore never
// overwrites.
func exists(ctx context.Context, c client.Client, obj client.Object, kind, ns, name string) error {
	err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
	switch {
	case err == nil:
		return fmt.Errorf("%s %s/%s exists; a restore never overwrites: choose another --into, or delete it first", kind, ns, name)
	case apierrors.IsNotFound(err):
		return nil
	}
	return fmt.Errorf("look for %s/%s: %w", ns, name, err)
}

func claimNames(cp *rollback.Copy) string {
	names := make([]string, len(cp.Claims))
	for i, p := range cp.Claims {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}
