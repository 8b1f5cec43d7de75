package cli

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/semprop/semprop/client"
)

// stateFlags are the query flags of the state commands.
type stateFlags struct {
	sf          serverFlags
	tree        string
	consistency string
	session     string
	asJSON      bool
}

func (f *stateFlags) register(cmd *cobra.Command) {
	f.sf.register(cmd)
	cmd.Flags().StringVar(&f.tree, "tree", "", "only this tree (its configured name)")
	cmd.Flags().StringVar(&f.consistency, "consistency", "eventual", "eventual, causal, session or strong")
	cmd.Flags().StringVar(&f.session, "session", "", "session token from an earlier read (with --consistency session)")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print the server's JSON answer")
}

func newStateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Read the file state synchronised between instances",
		Long: `Read the sync catalog: the state of every file in the named trees as this
instance and its peers saw it (size, mtime, hash, owner, the last event), with
conflicts where two instances changed a file concurrently. The daemon keeps it
when sync is configured; see docs/sync.md.

--consistency chooses the guarantee: eventual (the replica as it is), causal
(only complete deltas), session (read-your-writes and monotonic reads: pass
the token an earlier read printed with --session) or strong (through the Raft
cluster; refused when the daemon is not in one).`,
		Example: `  semprop state ls --tree docs --path '**/*.md'
  semprop state get docs notes/todo.md
  semprop state conflicts
  semprop state ls --consistency session --session "laptop:41,server:17"
  semprop state peers`,
	}
	cmd.AddCommand(newStateLsCmd(), newStateGetCmd(), newStateConflictsCmd(), newStatePeersCmd())
	return cmd
}

func newStateLsCmd() *cobra.Command {
	var f stateFlags
	var path string
	var deleted bool
	var limit int
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List catalog entries",
		Long: `List the catalog's entries, one line per version (an entry in conflict has one
line per concurrent version, marked CONFLICT). --path is a glob on the path
relative to the tree ("**" for any depth). The last line is the session token
of this read.`,
		Example: `  semprop state ls --tree docs --path 'reports/**'
  semprop state ls --deleted --json | jq '.entries[] | select(.deleted)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.query(cmd, client.StateQuery{Path: path, Deleted: deleted, Limit: limit})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&path, "path", "", "glob on the path relative to the tree")
	cmd.Flags().BoolVar(&deleted, "deleted", false, "include deleted files")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many entries")
	return cmd
}

func newStateGetCmd() *cobra.Command {
	var f stateFlags
	cmd := &cobra.Command{
		Use:   "get TREE PATH",
		Short: "Show one entry with all its versions",
		Long: `Show the entry of PATH (relative to the root of TREE), deleted or not, with
every version and its version vector. Exits 1 when the catalog has no such
entry.`,
		Example: `  semprop state get docs notes/todo.md
  semprop state get docs notes/todo.md --consistency strong`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			f.tree = args[0]
			c, err := f.sf.client()
			if err != nil {
				return err
			}
			res, err := c.State(cmd.Context(), client.StateQuery{Tree: args[0], Path: escapeGlob(args[1]), Deleted: true,
				Consistency: f.consistency, Session: f.session})
			if err != nil {
				return err
			}
			if len(res.Entries) == 0 {
				return fmt.Errorf("state: no entry %s in tree %s", args[1], args[0])
			}
			if f.asJSON {
				return writeJSONOut(cmd.OutOrStdout(), res.Entries[0])
			}
			e := res.Entries[0]
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s/%s", e.Tree, e.Path)
			switch {
			case e.Conflict:
				fmt.Fprintf(out, "  CONFLICT (%d versions)", len(e.Versions))
			case e.Deleted:
				fmt.Fprint(out, "  deleted")
			}
			fmt.Fprintln(out)
			for _, v := range e.Versions {
				fmt.Fprintf(out, "  %s\n", describeVersion(v))
			}
			fmt.Fprintf(out, "session: %s\n", res.Session)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().Lookup("tree").Hidden = true
	return cmd
}

func newStateConflictsCmd() *cobra.Command {
	var f stateFlags
	var path string
	cmd := &cobra.Command{
		Use:   "conflicts",
		Short: "List the entries changed concurrently on different instances",
		Long: `List the entries in conflict: changed on two or more instances without either
change having seen the other. Every version is kept until a later change
that has seen them all resolves the conflict: write (or delete) the file on
an instance that shows the conflict, with the content you keep.`,
		Example: `  semprop state conflicts
  semprop state conflicts --tree docs --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.query(cmd, client.StateQuery{Path: path, Conflicts: true})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&path, "path", "", "glob on the path relative to the tree")
	return cmd
}

func newStatePeersCmd() *cobra.Command {
	var sf serverFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "peers",
		Short: "Show this instance's sync name, summary and peers (admin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			st, err := c.SyncStatus(cmd.Context())
			var ce *client.Error
			if errors.As(err, &ce) && ce.Status == 404 {
				return errors.New("state: the daemon does not sync (no sync section in its configuration)")
			}
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), st)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "name %s, %d entries, %d tombstones, %d conflicts, applied seq %d\nsummary: %s\n",
				st.Name, st.Entries, st.Tombstones, st.Conflicts, st.Applied, vectorString(st.Summary))
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER\tNAME\tSTATIC\tFAILS\tLAST OK\tACKED\tLAST ERROR")
			for _, p := range st.Peers {
				last := "-"
				if p.LastOK != nil {
					last = p.LastOK.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%s\t%s\t%s\n", p.URL, p.Name, p.Static, p.Fails, last, vectorString(p.Acked), p.LastError)
			}
			return tw.Flush()
		},
	}
	sf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// query runs a state query and prints one line per version.
func (f *stateFlags) query(cmd *cobra.Command, q client.StateQuery) error {
	c, err := f.sf.client()
	if err != nil {
		return err
	}
	q.Tree, q.Consistency, q.Session = f.tree, f.consistency, f.session
	res, err := c.State(cmd.Context(), q)
	if err != nil {
		return err
	}
	if f.asJSON {
		return writeJSONOut(cmd.OutOrStdout(), res)
	}
	return printEntries(cmd.OutOrStdout(), res)
}

func printEntries(w io.Writer, res *client.StateResult) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TREE\tPATH\tSTATE\tSIZE\tMTIME\tHASH\tINSTANCE\tSEQ")
	for _, e := range res.Entries {
		for _, v := range e.Versions {
			state := "ok"
			switch {
			case e.Conflict:
				state = "CONFLICT"
			case v.Deleted:
				state = "deleted"
			case v.Dir:
				state = "dir"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d\n", e.Tree, e.Path, state, v.Size,
				v.ModTime().UTC().Format(time.RFC3339), orDash(v.Hash), v.Instance, v.Seq)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "session: %s\n", res.Session)
	return err
}

func describeVersion(v client.StateVersion) string {
	what := fmt.Sprintf("size %d, mtime %s, hash %s, uid %d", v.Size, v.ModTime().UTC().Format(time.RFC3339Nano), orDash(v.Hash), v.UID)
	if v.Deleted {
		what = "deleted"
	} else if v.Dir {
		what = "directory, mtime " + v.ModTime().UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("%s: %s; event seq %d on %s; version %s:%d {%s}", v.Instance, what, v.Seq, v.Instance, v.Origin, v.Counter, vectorString(v.VV))
}

// vectorString formats a version vector as the server does ("a:3,b:7").
func vectorString(v map[string]uint64) string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s:%d", k, v[k]))
	}
	return strings.Join(parts, ",")
}

// escapeGlob quotes the glob metacharacters of a literal path.
func escapeGlob(s string) string {
	var sb strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]{}\`, r) {
			sb.WriteByte('\\')
		}
		sb.WriteRune(r)
	}
	return sb.String()
}
