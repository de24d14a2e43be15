package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/restore"
)

// RestoreOptions configure `snapgate restore`.
type RestoreOptions struct {
	Kube *genericclioptions.ConfigFlags
	// Set is the snapshot set to restore, in the namespace of Kube.
	Set string
	// Into names the new StatefulSet, "NAME" or "NAMESPACE/NAME".
	Into string
	// Timeout bounds the wait for snapshots carried into another namespace.
	Timeout time.Duration
}

func newRestoreCommand() *cobra.Command {
	o := &RestoreOptions{Kube: genericclioptions.NewConfigFlags(true), Timeout: 5 * time.Minute}
	cmd := &cobra.Command{
		Use:   "restore set NAME --into [NAMESPACE/]STATEFULSET",
		Short: "Restore a snapshot set beside the live data, as a new StatefulSet of its own",
		Long: `Creates, from the set's snapshots, the PVCs of a new StatefulSet and that StatefulSet,
with the pod template and replicas recorded when the set was taken, its own labels (no
Service of the original selects it) and snapgate.io/guard: disabled. The StatefulSet the
set was taken of is not touched. Nothing that exists is overwritten.

Into another namespace, each snapshot is first carried across by its content: a
VolumeSnapshotContent of the same snapshot handle, with deletionPolicy Retain (deleting
the copy never deletes the original's data), and a VolumeSnapshot bound to it. That needs
the right to create VolumeSnapshotContents, and the Secrets, ConfigMaps and ServiceAccount
the pod template names must be in that namespace first.`,
		Example: `  snapgate restore set postgres-3f2a9c1d --into postgres-check -n db
  snapgate restore set postgres-3f2a9c1d --into restore-test/postgres -n db
  kubectl snapgate restore set/postgres-3f2a9c1d --into postgres-check`,
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := setArg(args)
			if err != nil {
				return err
			}
			o.Set = set
			if o.Into == "" {
				return errors.New("--into: name the new StatefulSet the set is restored as, NAME or NAMESPACE/NAME")
			}
			return o.Run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.Kube.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.Into, "into", "", "the new StatefulSet, NAME or NAMESPACE/NAME (it and its PVCs must not exist)")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "give up waiting for carried snapshots to be ready after this long")
	return cmd
}

// into is the new StatefulSet's namespace and name; the set's namespace when
// --into names none.
func (o *RestoreOptions) into(ns string) (types.NamespacedName, error) {
	into := types.NamespacedName{Namespace: ns, Name: o.Into}
	if before, after, ok := strings.Cut(o.Into, "/"); ok {
		if before == "" || after == "" || strings.Contains(after, "/") {
			return into, fmt.Errorf("--into=%q: must be NAME or NAMESPACE/NAME", o.Into)
		}
		into = types.NamespacedName{Namespace: before, Name: after}
	}
	return into, nil
}

// Run plans the copy, checks that nothing it would create exists, and creates it.
func (o *RestoreOptions) Run(ctx context.Context, out io.Writer) error {
	cfg, ns, c, err := connect(o.Kube)
	if err != nil {
		return err
	}
	into, err := o.into(ns)
	if err != nil {
		return err
	}
	cp, err := restore.Plan(ctx, c, o.Set, ns, into)
	if err != nil {
		return err
	}
	var w restore.Waiter
	if len(cp.Carried) > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		if w.Snapshots, w.Changes, err = snapshotter.WatchSnapshots(ctx, cfg, Scheme(), into.Namespace); err != nil {
			return err
		}
	}
	if err := restore.Create(ctx, c, w, cp, func(s string) { fmt.Fprintln(out, s) }); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "Restored set %s as %s.\nWatch it start: kubectl rollout status statefulset/%s -n %s\nWhen done: %s\n",
		o.Set, cp, into.Name, into.Namespace, restore.Cleanup(cp))
	return err
}
