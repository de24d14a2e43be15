// Command nsproxy lets the local stack's real node reach the control plane
// without leaving loopback. The kubelet lives in a network namespace of the
// stack's own (it refuses a loopback node IP), while the API server listens on
// the host's 127.0.0.1. nsproxy listens on an address inside the namespace and
// forwards each connection to an address on the host, so the kubelet dials its
// own 127.0.0.1 and the API server is dialled at the host's: no address of the
// machine's interfaces is ever used. The pods' way to the API server, the
// kubernetes Service's ClusterIP (which the stack gives the namespace, as
// kube-proxy's IPVS mode binds ClusterIPs to a local device), is a second
// --listen.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	netns := flag.String("netns", "", "network namespace to listen in, as a path (/run/netns/NAME)")
	var listens []string
	flag.Func("listen", "address to listen on inside the namespace (repeatable; default 127.0.0.1:6443)", func(s string) error {
		listens = append(listens, s)
		return nil
	})
	to := flag.String("to", "", "address to forward to, from the host's namespace (required)")
	flag.Parse()
	if *netns == "" || *to == "" {
		fmt.Fprintln(os.Stderr, "nsproxy: --netns and --to are required")
		os.Exit(2)
	}
	if len(listens) == 0 {
		listens = []string{"127.0.0.1:6443"}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errs := make(chan error, len(listens))
	for _, l := range listens {
		lis, err := listenIn(*netns, l)
		if err != nil {
			fmt.Fprintln(os.Stderr, "nsproxy:", err)
			os.Exit(1)
		}
		go func() { errs <- serve(ctx, lis, *to) }()
		fmt.Fprintf(os.Stderr, "nsproxy: forwarding %s in %s to %s\n", l, *netns, *to)
	}
	for range listens {
		if err := <-errs; err != nil {
			fmt.Fprintln(os.Stderr, "nsproxy:", err)
			os.Exit(1)
		}
	}
}

// serve forwards each connection lis accepts to to, until ctx ends.
func serve(ctx context.Context, lis net.Listener, to string) error {
	go func() {
		<-ctx.Done()
		lis.Close()
	}()
	for {
		conn, err := lis.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept on %s: %w", lis.Addr(), err)
		}
		go forward(conn, to)
	}
}

// listenIn opens a listening socket inside the network namespace at path. A
// socket stays in the namespace it was made in, so only the thread that makes it
// enters the namespace; that thread is never given back to the Go scheduler
// (it exits with its goroutine), and every dial happens in the host's namespace.
func listenIn(path, addr string) (net.Listener, error) {
	type result struct {
		lis net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("open %s: %w", path, err)}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("enter %s: %w", path, err)}
			return
		}
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			err = fmt.Errorf("listen on %s in %s: %w", addr, path, err)
		}
		ch <- result{lis, err}
	}()
	r := <-ch
	return r.lis, r.err
}

func forward(in net.Conn, to string) {
	defer in.Close()
	out, err := net.Dial("tcp", to)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nsproxy: dial %s: %v\n", to, err)
		return
	}
	defer out.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		// Half-close so the other side sees EOF, as on a direct connection.
		if c, ok := dst.(*net.TCPConn); ok {
			_ = c.CloseWrite()
		}
	}
	go pipe(out, in)
	go pipe(in, out)
	wg.Wait()
}
