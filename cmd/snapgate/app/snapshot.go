package app

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/hooks"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// SnapshotOptions configure `snapgate snapshot`.
type SnapshotOptions struct {
	Kube        *genericclioptions.ConfigFlags
	StatefulSet string
	// WaitFor is ready or cut; empty means what the StatefulSet's annotation says.
	WaitFor string
	// Timeout bounds the whole command.
	Timeout time.Duration
	Clock   clock.PassiveClock
}

// Validate checks the options.
func (o *SnapshotOptions) Validate() error {
	if o.WaitFor != "" && o.WaitFor != string(policy.WaitReady) && o.WaitFor != string(policy.WaitCut) {
		return fmt.Errorf("--wait-for=%q: must be ready or cut", o.WaitFor)
	}
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout=%s: must be above 0", o.Timeout)
	}
	return nil
}

func newSnapshotCommand() *cobra.Command {
	o := &SnapshotOptions{Kube: genericclioptions.NewConfigFlags(true), Timeout: 5 * time.Minute, Clock: clock.RealClock{}}
	cmd := &cobra.Command{
		Use:   "snapshot sts/NAME",
		Short: "Take a snapshot set of a StatefulSet now, with its hooks, and wait for it",
		Example: `  snapgate snapshot sts/postgres -n db
  kubectl snapgate snapshot sts/postgres --wait-for cut`,
		RunE: runOnStatefulSet(o),
	}
	o.Kube.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.WaitFor, "wait-for", o.WaitFor, "ready or cut; default: the StatefulSet's snapgate.io/wait-for, else ready")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "give up waiting after this long (the snapshots go on)")
	return cmd
}

func (o *SnapshotOptions) setStatefulSet(name string) { o.StatefulSet = name }

// Run takes the set through the same engine as the webhook: plan, hooks (run
// with the user's own credentials, so the API server checks their exec right),
// create, wait on a watch.
func (o *SnapshotOptions) Run(ctx context.Context, out io.Writer) error {
	ctx = log.IntoContext(ctx, logr.Discard())
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cfg, ns, c, err := connect(o.Kube)
	if err != nil {
		return err
	}
	var sts appsv1.StatefulSet
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: o.StatefulSet}, &sts); err != nil {
		return fmt.Errorf("get statefulset %s/%s: %w", ns, o.StatefulSet, err)
	}
	p, errs := policy.Parse(&sts)
	if len(errs) > 0 {
		return fmt.Errorf("statefulset %s/%s has bad snapgate annotations: %w", ns, sts.Name, errs.ToAggregate())
	}
	if o.WaitFor != "" {
		p.WaitFor = policy.Wait(o.WaitFor)
	}

	// Waiting is watch-driven, as in the webhook.
	snaps, tracker, err := snapshotter.WatchSnapshots(ctx, cfg, Scheme(), ns)
	if err != nil {
		return err
	}
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	engine := &snapshotter.Engine{
		Client: c, Reader: c, Snapshots: snaps, Changes: tracker,
		Hooks: &hooks.Runner{Exec: &hooks.RemoteExecutor{Config: cfg, Client: clientset}, Client: c, ExecAsRequester: true},
	}
	start := o.Clock.Now()
	plan, err := engine.PlanOnDemand(ctx, snapshotter.OnDemand{StatefulSet: &sts, Policy: p, By: whoAmI(ctx, c), At: start})
	if plan != nil {
		for _, l := range plan.LeftOut {
			fmt.Fprintf(out, "Leaving out %s.\n", l)
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Taking snapshot set %s of statefulset %s/%s (%s)...\n", plan.Set, ns, sts.Name, snapshotter.Count(len(plan.Snapshots), "PVC"))
	prog, err := engine.Take(ctx, plan)
	if err != nil {
		return fmt.Errorf("snapshot set %s: %d/%d cut, %d/%d ready: %w", plan.Set, prog.Cut, prog.Total, prog.Ready, prog.Total, err)
	}
	for _, p := range prog.Hooks.NotRunning {
		fmt.Fprintf(out, "No hooks in %s: snapshotted as it is.\n", p)
	}
	if tf := prog.Hooks.ThawFailed; tf != nil {
		fmt.Fprintf(out, "The post-hook failed in %s, which may still be quiesced: %v\n", strings.Join(tf.Pods, ", "), tf.Err)
	}
	_, err = fmt.Fprintf(out, "Took snapshot set %s: %s %s in %s.\n", plan.Set, snapshotter.Count(prog.Total, "snapshot"), plan.WaitFor, o.Clock.Now().Sub(start).Round(10*time.Millisecond))
	return err
}

// whoAmI is the user as the API server authenticates them, for the record on
// the snapshots; unknown when the server will not say.
func whoAmI(ctx context.Context, c client.Client) authenticationv1.UserInfo {
	review := &authenticationv1.SelfSubjectReview{}
	if err := c.Create(ctx, review); err != nil {
		return authenticationv1.UserInfo{Username: "unknown"}
	}
	return review.Status.UserInfo
}
