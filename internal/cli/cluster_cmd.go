package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/semprop/semprop/internal/cluster"
)

// newClusterCmd is `semprop cluster status|join|leave`.
func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show and change cluster membership; issue member certificates",
	}
	var sf serverFlags
	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the leader, members, commit index, applied indexes, lag and clock offsets",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st cluster.Status
			if err := clusterCall(cmd.Context(), &sf, http.MethodGet, "/v1/cluster", nil, &st); err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), st)
			}
			printStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	sf.register(status)

	var jf serverFlags
	var m cluster.Member
	join := &cobra.Command{
		Use:   "join --id ID --raft-addr HOST:PORT --api-url URL",
		Short: "Add a node to the cluster (asked of the member at --server)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := clusterCall(cmd.Context(), &jf, http.MethodPost, "/v1/cluster/join", m, nil); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "joined", m.ID)
			return nil
		},
	}
	join.Flags().StringVar(&m.ID, "id", "", "node ID")
	join.Flags().StringVar(&m.RaftAddr, "raft-addr", "", "the node's Raft address")
	join.Flags().StringVar(&m.APIURL, "api-url", "", "the node's API URL")
	jf.register(join)

	var lf serverFlags
	var id string
	leave := &cobra.Command{
		Use:   "leave --id ID",
		Short: "Remove a node from the cluster (a leader hands leadership over first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if id == "" {
				return errors.New("--id is required: the ID of the node to remove")
			}
			var out map[string]string
			if err := clusterCall(cmd.Context(), &lf, http.MethodPost, "/v1/cluster/leave", map[string]string{"id": id}, &out); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "left", out["left"])
			return nil
		},
	}
	leave.Flags().StringVar(&id, "id", "", "ID of the node to remove (required)")
	lf.register(leave)

	cmd.AddCommand(status, join, leave, newClusterCertsCmd())
	return cmd
}

// newClusterCertsCmd is `semprop cluster certs`: a cluster CA and member
// certificates, for operators without their own PKI.
func newClusterCertsCmd() *cobra.Command {
	var dir string
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "certs --dir DIR NODE-ID...",
		Short: "Create a cluster CA (once) and a member certificate for each node ID",
		Long: `Create the cluster's credentials in --dir: the CA (ca.pem, ca-key.pem), created
unless it exists, and for each NODE-ID a member certificate and key
(NODE-ID.pem, NODE-ID-key.pem), ECDSA P-256, usable for client and server
authentication. Copy ca.pem, NODE-ID.pem and NODE-ID-key.pem to each node and
run it with --cluster-ca, --cluster-cert and --cluster-key. Keep ca-key.pem
off the nodes: whoever holds it can mint members.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, ids []string) error {
			if dir == "" {
				return errors.New("--dir is required")
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			caPath, caKeyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
			var ca *cluster.CA
			certPEM, err1 := os.ReadFile(caPath)
			keyPEM, err2 := os.ReadFile(caKeyPath)
			switch {
			case err1 == nil && err2 == nil:
				var err error
				if ca, err = cluster.ParseCA(certPEM, keyPEM); err != nil {
					return err
				}
			case errors.Is(err1, fs.ErrNotExist) && errors.Is(err2, fs.ErrNotExist):
				var err error
				if ca, err = cluster.GenerateCA("semprop cluster CA", 10*validity); err != nil {
					return err
				}
				if err := writeNew(caPath, ca.CertPEM, 0o644); err != nil {
					return err
				}
				if err := writeNew(caKeyPath, ca.KeyPEM, 0o600); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "created", caPath, caKeyPath)
			default:
				return fmt.Errorf("need both or neither of %s and %s: %v, %v", caPath, caKeyPath, err1, err2)
			}
			for _, id := range ids {
				if id == "" || id == "ca" || strings.ContainsAny(id, `/\`) {
					return fmt.Errorf("node ID %q: not usable as a file name", id)
				}
				c, k, err := ca.Issue(id, nil, validity)
				if err != nil {
					return err
				}
				cp, kp := filepath.Join(dir, id+".pem"), filepath.Join(dir, id+"-key.pem")
				if err := writeNew(cp, c, 0o644); err != nil {
					return err
				}
				if err := writeNew(kp, k, 0o600); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "created", cp, kp)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the CA and the certificates")
	cmd.Flags().DurationVar(&validity, "validity", 365*24*time.Hour, "validity of the member certificates (the CA's is ten times longer)")
	return cmd
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func printStatus(w io.Writer, st cluster.Status) {
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY: " + st.Reason
	}
	fmt.Fprintf(w, "node %s: %s, term %d, leader %s, commit index %d, %s\n", st.ID, st.State, st.Term, st.Leader, st.CommitIndex, ready)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tRAFT\tAPI\tAPPLIED\tLAG\tLAST SEQ\tCLOCK OFFSET\tNOTE")
	for _, m := range st.Members {
		role := m.Suffrage
		if m.Leader {
			role = "leader"
		}
		off := "-"
		if m.Self {
			off = "self"
		} else if !m.LastSeen.IsZero() {
			off = fmt.Sprintf("%v ± %v", time.Duration(m.OffsetNS), time.Duration(m.ErrorNS))
		}
		note := m.Refused
		if note == "" && m.LastErr != "" {
			note = "unreachable: " + m.LastErr
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", m.ID, role, m.RaftAddr, m.APIURL, m.AppliedIndex, m.Lag, m.LastSeq, off, note)
	}
	tw.Flush()
}

// clusterCall sends one request to the /v1/cluster routes of --server.
func clusterCall(ctx context.Context, sf *serverFlags, method, path string, in, out any) error {
	hc, err := clusterHTTPClient(sf)
	if err != nil {
		return err
	}
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(sf.server, "/")+path, body)
	if err != nil {
		return err
	}
	token := sf.token
	if token == "" {
		token = os.Getenv("SEMPROP_TOKEN")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var eb struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		if json.Unmarshal(data, &eb) == nil && eb.Code == cluster.CodeNotInCluster {
			return fmt.Errorf("the daemon at %s is not in a cluster", sf.server)
		}
		if eb.Error != "" {
			return fmt.Errorf("%s: %s", resp.Status, eb.Error)
		}
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(data))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

func clusterHTTPClient(sf *serverFlags) (*http.Client, error) {
	if sf.caFile == "" && sf.cert == "" {
		return http.DefaultClient, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if sf.caFile != "" {
		pem, err := os.ReadFile(sf.caFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no certificates found", sf.caFile)
		}
	}
	if sf.cert != "" {
		c, err := tls.LoadX509KeyPair(sf.cert, sf.certKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert: %w", err)
		}
		conf.Certificates = []tls.Certificate{c}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = conf
	return &http.Client{Transport: tr}, nil
}
