// Command hostpath-csi serves the local stack's hostpath CSI driver on a unix socket.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr/funcr"

	"github.com/snapgate/snapgate/e2e/stack/hostpath"
)

func main() {
	var opts hostpath.Options
	var socket string
	flag.StringVar(&opts.Name, "driver-name", "hostpath.csi.snapgate.io", "CSI driver name")
	flag.StringVar(&opts.Root, "root", "", "directory that holds volumes and snapshots (required)")
	flag.StringVar(&socket, "socket", "", "unix socket to serve CSI on (required)")
	flag.Parse()
	if opts.Root == "" || socket == "" {
		fmt.Fprintln(os.Stderr, "hostpath-csi: --root and --socket are required")
		os.Exit(2)
	}
	opts.Log = funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{})
	if err := run(opts, socket); err != nil {
		fmt.Fprintln(os.Stderr, "hostpath-csi:", err)
		os.Exit(1)
	}
}

func run(opts hostpath.Options, socket string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := hostpath.New(opts)
	if err != nil {
		return err
	}
	return d.Serve(ctx, socket)
}
