// Command exec-binder keeps one kwok Exec rule per pod, so that exec runs in the
// pod's volume directory (see package execbinder).
package main

import (
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/snapgate/snapgate/e2e/stack/execbinder"
)

func main() {
	// --kubeconfig is controller-runtime's own flag (it registers it globally).
	b := &execbinder.Binder{}
	flag.StringVar(&b.Driver, "driver-name", "hostpath.csi.snapgate.io", "CSI driver whose volumes are local directories")
	flag.StringVar(&b.Root, "root", "", "the hostpath driver's state directory (required)")
	flag.Parse()
	if b.Root == "" {
		fmt.Fprintln(os.Stderr, "exec-binder: --root is required")
		os.Exit(2)
	}
	if err := run(b); err != nil {
		fmt.Fprintln(os.Stderr, "exec-binder:", err)
		os.Exit(1)
	}
}

func run(b *execbinder.Binder) error {
	ctrl.SetLogger(zap.New())
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	b.Client = mgr.GetClient()
	if err := b.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up binder: %w", err)
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}
