// Package cli implements semprop's command line: run (the daemon), publish,
// tail, routes, cluster, journal and version. Commands parse flags and call
// into the packages that do the work: run builds a daemon.Config and runs
// package daemon; the client commands use the Go SDK (package client).
package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/semprop/semprop/client"
)

// Version is set at build time with -ldflags "-X github.com/semprop/semprop/internal/cli.Version=…".
var Version = ""

// version reports the module version and, when the binary was built from
// a VCS checkout, the revision, its time and whether the tree was modified.
func version() string {
	v := Version
	bi, ok := debug.ReadBuildInfo()
	if v == "" {
		v = "dev"
		if ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	if !ok {
		return v
	}
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+modified"
			}
		}
	}
	if rev != "" {
		v += " (" + rev + dirty
		if at != "" {
			v += ", " + at
		}
		v += ")"
	}
	return v + " " + bi.GoVersion
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
		Version:       version(),
	}
	root.SetVersionTemplate("semprop {{.Version}}\n")
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newRunCmd(), newPublishCmd(), newTailCmd(), newRoutesCmd(), newConsumersCmd(), newStatusCmd(), newClusterCmd(), newJournalCmd(), newRulesCmd(), newAuditCmd(), newSnapshotsCmd(),
		newGuardCmd(), newTopCmd(), newAlertsCmd(), newHealthCmd(), newStateCmd(), newOutputsCmd(), &cobra.Command{
			Use:   "version",
			Short: "Print the version, the VCS revision it was built from, and the Go version",
			Args:  cobra.NoArgs,
			Run: func(cmd *cobra.Command, _ []string) {
				fmt.Fprintln(cmd.OutOrStdout(), "semprop", version())
			},
		})
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes every command below the root that only
// groups subcommands fail on an argument that names none of them: cobra
// checks that for the root only, and otherwise prints the group's help
// and exits 0, so `semprop consumers craete x` would look like success to
// a script. The group alone still prints its help.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		if sub.HasSubCommands() && !sub.Runnable() {
			sub.DisableFlagsInUseLine = true // "semprop consumers": its help
			sub.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
				}
				return cmd.Help()
			}
		}
		refuseUnknownSubcommands(sub)
	}
}

// serverFlags are shared by the client commands.
type serverFlags struct {
	server  string
	token   string
	caFile  string
	cert    string
	certKey string
}

func (f *serverFlags) register(cmd *cobra.Command) {
	server := "http://127.0.0.1:7878"
	if env := os.Getenv("SEMPROP_SERVER"); env != "" {
		server = env
	}
	cmd.Flags().StringVar(&f.server, "server", server, "semprop server URL (https:// for TLS; default $SEMPROP_SERVER, else http://127.0.0.1:7878)")
	cmd.Flags().StringVar(&f.token, "token", "", "bearer token (default $SEMPROP_TOKEN)")
	cmd.Flags().StringVar(&f.caFile, "tls-ca", "", "trust this CA (PEM) for the server's certificate")
	cmd.Flags().StringVar(&f.cert, "tls-cert", "", "client certificate (PEM) for mutual TLS")
	cmd.Flags().StringVar(&f.certKey, "tls-key", "", "private key of --tls-cert")
}

// client builds the API client the flags describe.
func (f *serverFlags) client() (*client.Client, error) {
	token := f.token
	if token == "" {
		token = os.Getenv("SEMPROP_TOKEN")
	}
	if f.caFile == "" && f.cert == "" {
		return client.New(f.server, token), nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.caFile != "" {
		pem, err := os.ReadFile(f.caFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no certificates found", f.caFile)
		}
	}
	if f.cert != "" {
		c, err := tls.LoadX509KeyPair(f.cert, f.certKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert: %w", err)
		}
		conf.Certificates = []tls.Certificate{c}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = conf
	return client.NewWithHTTPClient(f.server, token, &http.Client{Transport: tr}), nil
}
