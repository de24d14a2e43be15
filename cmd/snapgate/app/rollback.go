package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// RollbackOptions configure `snapgate rollback`.
type RollbackOptions struct {
	Kube        *genericclioptions.ConfigFlags
	StatefulSet string
	// To is a set name, or "latest".
	To string
	// Wait follows the rollback until it ends.
	Wait bool
	// Timeout bounds the wait.
	Timeout time.Duration
	Clock   clock.PassiveClock
}

// Validate checks the options.
func (o *RollbackOptions) Validate() error {
	if o.To == "" {
		return errors.New(`--to: name a snapshot set (see "snapgate list"), or "latest"`)
	}
	if _, errs := policy.ParseAnnotations(map[string]string{policy.RollbackTo: o.To}); len(errs) > 0 {
		return fmt.Errorf("--to=%q: %s", o.To, errs.ToAggregate())
	}
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout=%s: must be above 0", o.Timeout)
	}
	return nil
}

func newRollbackCommand() *cobra.Command {
	o := &RollbackOptions{Kube: genericclioptions.NewConfigFlags(true), To: "latest", Timeout: 15 * time.Minute, Clock: clock.RealClock{}}
	cmd := &cobra.Command{
		Use:   "rollback sts/NAME",
		Short: "Roll a StatefulSet's data, pod template and replicas back to a snapshot set",
		Long: `Asks snapgate's controller for a rollback by setting snapgate.io/rollback-to, and with
--wait follows it to the end. The controller takes a safety set of the current data,
scales the StatefulSet to 0, keeps the replaced volumes (reclaim policy Retain),
replaces each PVC with a copy of its snapshot, and restores the recorded pod template
and replica count.`,
		Example: `  snapgate rollback sts/postgres -n db --wait
  kubectl snapgate rollback sts/postgres --to postgres-3f2a9c1d --wait`,
		RunE: runOnStatefulSet(o),
	}
	o.Kube.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.To, "to", o.To, `the snapshot set to roll back to, or "latest" (the newest ready set taken before a change)`)
	cmd.Flags().BoolVar(&o.Wait, "wait", o.Wait, "follow the rollback until it ends")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "with --wait, stop following after this long (the rollback goes on)")
	return cmd
}

func (o *RollbackOptions) setStatefulSet(name string) { o.StatefulSet = name }

// Run asks for the rollback, or joins the one in progress, and follows it.
func (o *RollbackOptions) Run(ctx context.Context, out io.Writer) error {
	cfg, ns, c, err := connect(o.Kube)
	if err != nil {
		return err
	}
	key := types.NamespacedName{Namespace: ns, Name: o.StatefulSet}
	var sts appsv1.StatefulSet
	if err := c.Get(ctx, key, &sts); err != nil {
		return fmt.Errorf("get statefulset %s: %w", key, err)
	}
	prev, _ := policy.ParseRollbackState(sts.Annotations)
	switch {
	case prev.InProgress():
		if !o.Wait {
			return fmt.Errorf("statefulset %s is being rolled back to %s already (%s); follow it with --wait", key, prev.Request, prev.Phase)
		}
		fmt.Fprintf(out, "Following the rollback of statefulset %s to %s in progress.\n", key, prev.Request)
	default:
		if err := o.checkSet(ctx, c, ns); err != nil {
			return err
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{policy.RollbackTo: o.To}}})
		if err := c.Patch(ctx, &sts, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return fmt.Errorf("ask for the rollback of statefulset %s: %w", key, err)
		}
		fmt.Fprintf(out, "Asked snapgate to roll statefulset %s back to %s.\n", key, o.To)
		if !o.Wait {
			fmt.Fprintf(out, "Follow it with: kubectl snapgate rollback sts/%s -n %s --wait\n", o.StatefulSet, ns)
			return nil
		}
	}
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	st, err := o.follow(ctx, clientset, key, prev, out)
	if err != nil {
		return err
	}
	if st.Phase == policy.PhaseFailed {
		return fmt.Errorf("rollback of statefulset %s failed: %s", key, st.Message)
	}
	fmt.Fprintf(out, "Rolled back: %s\n", st.Message)
	return nil
}

// checkSet fails early, with the sets there are, when --to names none of them;
// the controller checks everything again.
func (o *RollbackOptions) checkSet(ctx context.Context, c client.Client, ns string) error {
	sets, err := snapshotter.ListSets(ctx, snapshotter.PerPVC{Snapshots: c}, ns, o.StatefulSet)
	if err != nil {
		return err
	}
	if len(sets) == 0 {
		return fmt.Errorf("statefulset %s/%s has no snapshot sets to roll back to", ns, o.StatefulSet)
	}
	if o.To == "latest" {
		return nil
	}
	names := make([]string, 0, len(sets))
	for _, s := range sets {
		if s.Name == o.To {
			return nil
		}
		names = append(names, s.Name)
	}
	return fmt.Errorf("--to=%s: statefulset %s/%s has no such set; it has: %s", o.To, ns, o.StatefulSet, strings.Join(names, ", "))
}

// follow watches the StatefulSet and prints each step of the rollback until it
// ends. A rollback that had ended before (prev) is not this one.
func (o *RollbackOptions) follow(ctx context.Context, cs kubernetes.Interface, key types.NamespacedName, prev policy.RollbackState, out io.Writer) (policy.RollbackState, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	start := o.Clock.Now()
	lw := toolscache.NewListWatchFromClient(cs.AppsV1().RESTClient(), "statefulsets", key.Namespace, fields.OneTermEqualSelector("metadata.name", key.Name))
	var last policy.RollbackState
	_, err := watchtools.UntilWithSync(ctx, lw, &appsv1.StatefulSet{}, nil, func(ev watch.Event) (bool, error) {
		if ev.Type == watch.Deleted {
			return false, fmt.Errorf("statefulset %s was deleted during its rollback", key)
		}
		sts, ok := ev.Object.(*appsv1.StatefulSet)
		if !ok {
			return false, nil
		}
		st, _ := policy.ParseRollbackState(sts.Annotations)
		if !prev.InProgress() && st.ID == prev.ID {
			return false, nil // the controller has not taken it up yet
		}
		if st.Phase != last.Phase || st.Message != last.Message {
			fmt.Fprintf(out, "%6s  %-18s %s\n", o.Clock.Now().Sub(start).Round(time.Second), st.Phase, st.Message)
		}
		last = st
		_, asked := sts.Annotations[policy.RollbackTo]
		return !asked && !st.InProgress(), nil
	})
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, watchtools.ErrWatchClosed) {
		return last, fmt.Errorf("stopped following after %s at %s (the rollback goes on); follow it again with --wait", o.Timeout, last.Phase)
	}
	return last, err
}
