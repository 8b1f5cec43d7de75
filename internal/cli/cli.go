// Package cli implements semprop's command line: run (the daemon), publish,
// tail and version. Commands parse flags and call into the packages that do
// the work.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X github.com/semprop/semprop/internal/cli.Version=…".
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// exitError carries an exit status through cobra.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// Main runs the command line and returns the process exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintln(stderr, "semprop:", err)
		return 1
	}
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "semprop",
		Short: "Semantic event propagation for file systems",
		Long: `semprop captures what happens to files at the kernel (fanotify) and at a FUSE
mount, turns every operation into one canonical event with its context (path,
inode, pid, uid, process name, sizes, clocks), stores it durably in order and
routes it to subscribers: in-process, over HTTP (CloudEvents, SSE) and to
durable consumers. Applications publish their own events beside the
file-system ones.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newRunCmd(), newPublishCmd(), newTailCmd(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "semprop", version())
		},
	})
	return root
}

// serverFlags are shared by the client commands.
type serverFlags struct {
	server string
	token  string
}

func (f *serverFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.server, "server", "http://127.0.0.1:7878", "semprop server URL")
	cmd.Flags().StringVar(&f.token, "token", os.Getenv("SEMPROP_TOKEN"), "bearer token (default $SEMPROP_TOKEN)")
}
