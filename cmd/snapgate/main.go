// Command snapgate guards StatefulSet changes with CSI snapshots; see the README.
package main

import (
	"os"

	"github.com/snapgate/snapgate/cmd/snapgate/app"
)

func main() {
	os.Exit(app.Run(os.Args[1:], os.Stdout, os.Stderr))
}
