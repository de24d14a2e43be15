package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/snapgate/snapgate/snapshotter"
)

// ListOptions configure `snapgate list`.
type ListOptions struct {
	// Kube are the standard kubectl flags (--kubeconfig, --context, -n, ...).
	Kube *genericclioptions.ConfigFlags
	// Output is table, json or yaml.
	Output string
	// StatefulSet is the name from the sts/NAME argument.
	StatefulSet string
	// Clock tells the time.
	Clock clock.PassiveClock
}

var listOutputs = []string{"table", "json", "yaml"}

// Complete reads the argument.
func (o *ListOptions) Complete(args []string) error {
	name, err := statefulSetArg(args)
	o.StatefulSet = name
	return err
}

// Validate checks the options.
func (o *ListOptions) Validate() error {
	if !slices.Contains(listOutputs, o.Output) {
		return fmt.Errorf("--output=%q: must be one of %s", o.Output, strings.Join(listOutputs, ", "))
	}
	return nil
}

// statefulSetArg reads sts/NAME, statefulset/NAME or NAME.
func statefulSetArg(args []string) (string, error) {
	if len(args) != 1 {
		return "", fmt.Errorf("name one StatefulSet, as sts/NAME")
	}
	kind, name, found := strings.Cut(args[0], "/")
	if !found {
		name, kind = kind, "sts"
	}
	switch strings.ToLower(kind) {
	case "sts", "statefulset", "statefulsets", "statefulset.apps", "statefulsets.apps":
	default:
		return "", fmt.Errorf("%q: snapgate guards StatefulSets; name one as sts/NAME", args[0])
	}
	if name == "" {
		return "", fmt.Errorf("%q: the StatefulSet's name is missing; name one as sts/NAME", args[0])
	}
	return name, nil
}

// statefulSetCommand is a command on one StatefulSet, named as sts/NAME.
type statefulSetCommand interface {
	setStatefulSet(name string)
	Validate() error
	Run(ctx context.Context, out io.Writer) error
}

// runOnStatefulSet is the RunE of a statefulSetCommand: read the name,
// validate, run.
func runOnStatefulSet(o statefulSetCommand) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		name, err := statefulSetArg(args)
		if err != nil {
			return err
		}
		o.setStatefulSet(name)
		if err := o.Validate(); err != nil {
			return err
		}
		return o.Run(cmd.Context(), cmd.OutOrStdout())
	}
}

func newListCommand() *cobra.Command {
	o := &ListOptions{Kube: genericclioptions.NewConfigFlags(true), Output: "table", Clock: clock.RealClock{}}
	cmd := &cobra.Command{
		Use:   "list sts/NAME",
		Short: "List the snapshot sets of a StatefulSet, newest first",
		Example: `  snapgate list sts/postgres -n db
  kubectl snapgate list sts/postgres -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(args); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.Kube.AddFlags(cmd.Flags())
	cmd.Flags().StringVarP(&o.Output, "output", "o", o.Output, "output format: "+strings.Join(listOutputs, ", "))
	return cmd
}

// Run lists the sets.
func (o *ListOptions) Run(ctx context.Context, out io.Writer) error {
	_, ns, c, err := connect(o.Kube)
	if err != nil {
		return err
	}
	sets, err := snapshotter.ListSets(ctx, snapshotter.PerPVC{Snapshots: c}, ns, o.StatefulSet)
	if err != nil {
		return err
	}
	return o.print(out, ns, sets)
}

func (o *ListOptions) print(out io.Writer, ns string, sets []snapshotter.SetInfo) error {
	switch o.Output {
	case "json":
		b, err := json.MarshalIndent(sets, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(out, string(b))
		return err
	case "yaml":
		b, err := yaml.Marshal(sets)
		if err != nil {
			return err
		}
		_, err = out.Write(b)
		return err
	}
	if len(sets) == 0 {
		_, err := fmt.Fprintf(out, "No snapshot sets of statefulset %s/%s.\n", ns, o.StatefulSet)
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(w, "SET\tREASON\tAGE\tREADY\tVERIFIED\tSIZE\tBY")
	for _, s := range sets {
		ready := fmt.Sprintf("%d/%d", s.Ready, s.Snapshots)
		switch {
		case s.Failed != "":
			ready += " (failed)"
		case s.Ready < s.Snapshots && s.Overdue:
			ready += " (overdue)"
		}
		verified := "-"
		if s.Verified != "" {
			verified = s.Verified + " " + duration.HumanDuration(o.Clock.Now().Sub(s.VerifiedAt)) + " ago"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Reason, duration.HumanDuration(o.Clock.Now().Sub(s.Created)), ready, verified, humanSize(s.Size.Value()), s.RequestedBy)
	}
	return w.Flush()
}

// connect is what every kubectl-style subcommand needs from kubectl's flags: the
// REST config, the namespace (-n, or the context's), and a client that knows
// snapshots.
func connect(kube *genericclioptions.ConfigFlags) (*rest.Config, string, client.Client, error) {
	cfg, err := kube.ToRESTConfig()
	if err != nil {
		return nil, "", nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	ns, _, err := kube.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", nil, fmt.Errorf("namespace: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		return nil, "", nil, fmt.Errorf("connect: %w", err)
	}
	return cfg, ns, c, nil
}

// humanSize prints bytes in binary units, as kubectl prints capacities; "-"
// where the driver reported no size.
func humanSize(b int64) string {
	if b <= 0 {
		return "-"
	}
	units := []string{"B", "Ki", "Mi", "Gi", "Ti", "Pi"}
	v, i := float64(b), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 || v >= 100 {
		return fmt.Sprintf("%.0f%s", v, units[i])
	}
	return fmt.Sprintf("%.1f%s", v, units[i])
}
