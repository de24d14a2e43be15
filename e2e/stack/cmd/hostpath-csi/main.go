// Command hostpath-csi serves the local stack's hostpath CSI driver on a unix
// socket: its controller side (volumes and snapshots, for the CSI sidecars), or
// with --node-id its node side (mounts, for the kubelet of the real node).
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
	var socket, nodeID, registrationDir string
	flag.StringVar(&opts.Name, "driver-name", "hostpath.csi.snapgate.io", "CSI driver name")
	flag.StringVar(&opts.Root, "root", "", "directory that holds volumes and snapshots (required)")
	flag.StringVar(&socket, "socket", "", "unix socket to serve CSI on (required)")
	flag.StringVar(&nodeID, "node-id", "", "serve the node side for this node, instead of the controller side")
	flag.StringVar(&registrationDir, "registration-dir", "", "kubelet's plugin registration directory (with --node-id)")
	flag.Parse()
	if opts.Root == "" || socket == "" || (nodeID != "") != (registrationDir != "") {
		fmt.Fprintln(os.Stderr, "hostpath-csi: --root and --socket are required; --node-id and --registration-dir go together")
		os.Exit(2)
	}
	opts.Log = funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{})
	if err := run(opts, socket, nodeID, registrationDir); err != nil {
		fmt.Fprintln(os.Stderr, "hostpath-csi:", err)
		os.Exit(1)
	}
}

func run(opts hostpath.Options, socket, nodeID, registrationDir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if nodeID != "" {
		n, err := hostpath.NewNode(hostpath.NodeOptions{Name: opts.Name, NodeID: nodeID, Root: opts.Root, Log: opts.Log})
		if err != nil {
			return err
		}
		return n.ServeNode(ctx, socket, registrationDir)
	}
	d, err := hostpath.New(opts)
	if err != nil {
		return err
	}
	return d.Serve(ctx, socket)
}
