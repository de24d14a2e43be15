// Command pause is the sandbox process of the local stack's real node: it holds a
// pod's namespaces open and does nothing else. No registry can be reached here,
// so the node's pause image is built from this instead of pulled.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// As PID 1 of the sandbox it must end on SIGTERM/SIGINT (the kernel ignores
	// signals without a handler for PID 1) and reap what its namespace orphans.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
