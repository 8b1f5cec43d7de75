// Command semprop captures file-system events at the kernel and FUSE
// boundaries, stores them durably in order and propagates them to
// subscribers. See README.md and `semprop --help`.
package main

import (
	"os"

	"github.com/semprop/semprop/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
