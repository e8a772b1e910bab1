package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/haroll/haroll/agent"
)

func newRecover() *cobra.Command {
	var status, abandon bool
	var output string
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Finish or roll back a replacement that a crash cut off (the agent does this when it starts)",
		Long: `recover reads the journal in state_dir. A new container that had passed
the health gate is kept and given its traffic; anything earlier is rolled back
to the old container. Either way the server gets its original weight and state
back and no container is left over. "haroll redeploy" and "haroll agent" do
this first on their own.

A slot whose rollback cannot bring the old container back (it was removed, or
no longer starts) is wedged: every recovery fails the same way and its server
stays in maintenance. Then:

  --status    shows the journal, what exists now (containers, HAProxy server)
              and what recover would do; it changes nothing and takes no lock.
  "haroll redeploy --slot S --image <a working image>"
              takes the wedged slot over: it clones the old container (or,
              when that is gone, the kept new one) with the working image,
              proves it and gives the server its original weight back.
  --abandon   puts the server in maintenance (unless the new container had
              passed the gate), forgets the journal and lists what is left
              and what to do by hand.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if status && abandon {
				return usageError("--status and --abandon: choose one")
			}
			if output != "text" && output != "json" {
				return usageError("--output %q: want text or json", output)
			}
			cfg, err := loadAgentConfig(cmd)
			if err != nil {
				return err
			}
			a, closeAgent, err := openAgent(cmd.Context(), cfg, nil)
			if err != nil {
				return err
			}
			defer closeAgent()
			out := cmd.OutOrStdout()
			switch {
			case status:
				p, err := a.Pending(cmd.Context())
				if err != nil {
					return err
				}
				if output == "json" {
					return writeJSON(out, p)
				}
				printPending(out, p, cfg.StateDir)
				return nil
			case abandon:
				ab, err := a.Abandon(cmd.Context(), "recover --abandon by "+whoami())
				if errors.Is(err, agent.ErrNothingPending) {
					return fmt.Errorf("%w; `haroll recover --status` shows the journal when there is one", err)
				}
				if err != nil {
					return err
				}
				if output == "json" {
					return writeJSON(out, ab)
				}
				printAbandoned(out, ab)
				return nil
			}
			did, err := a.Recover(cmd.Context())
			if err != nil {
				return err
			}
			if did == "" {
				did = "nothing to recover: no replacement was cut off"
			}
			fmt.Fprintln(out, did)
			return nil
		},
	}
	agentFlags(cmd)
	f := cmd.Flags()
	f.BoolVar(&status, "status", false, "show the pending replacement, what is there now and what recover would do; change nothing")
	f.BoolVar(&abandon, "abandon", false, "forget the pending replacement, its server left in maintenance, and list what is left")
	f.StringVarP(&output, "output", "o", "text", "text or json (with --status or --abandon)")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printPending writes what `haroll recover --status` shows.
func printPending(w io.Writer, p agent.Pending, stateDir string) {
	e := p.Journal
	if e == nil && len(p.Pairs) == 0 {
		fmt.Fprintf(w, "nothing pending: no replacement was cut off (no journal in %s)\n", stateDir)
		return
	}
	defer printPairs(w, p)
	if e == nil {
		if p.Busy != "" {
			fmt.Fprintf(w, "a redeploy runs now: %s\n", p.Busy)
		}
		return
	}
	printEntry(w, "pending: the replacement of slot", e)
	if p.Busy != "" {
		fmt.Fprintf(w, "  it runs now: %s\n", p.Busy)
	}
	printLeft(w, p)
	if p.Recover != "" {
		fmt.Fprintf(w, "haroll recover would: %s\n", p.Recover)
	}
	if len(p.Forward) > 0 {
		fmt.Fprintln(w, "ways forward:")
		for _, f := range p.Forward {
			fmt.Fprintf(w, "  - %s\n", f)
		}
	}
}

// printPairs writes the pending halves of blue/green redeploys.
func printPairs(w io.Writer, p agent.Pending) {
	for _, pp := range p.Pairs {
		if pp.Journal == nil {
			fmt.Fprintf(w, "pending: a blue/green %s journal that cannot be read: %s\n", pp.Kind, pp.Err)
			continue
		}
		what := map[string]string{"surge": "surge (new side coming up)", "retire": "retirement of the old side"}[pp.Kind]
		printEntry(w, "pending: the blue/green "+what+" of slot", pp.Journal)
		if pp.Err != "" {
			fmt.Fprintf(w, "  error: %s\n", pp.Err)
			continue
		}
		printLeft(w, agent.Pending{Old: pp.Old, New: pp.New})
		for _, s := range []struct {
			what string
			s    *agent.ServerState
		}{{"old side", pp.Live}, {"new side", pp.Idle}} {
			if s.s != nil {
				printServer(w, s.what, s.s)
			}
		}
		fmt.Fprintf(w, "haroll recover would: %s\n", pp.Recover)
	}
}

// printAbandoned writes what `haroll recover --abandon` did and left.
func printAbandoned(w io.Writer, ab agent.Abandoned) {
	printEntry(w, "abandoned: the replacement of slot", ab.Journal)
	printLeft(w, ab.Pending)
	fmt.Fprintln(w, "what to do now:")
	for i, n := range ab.Next {
		fmt.Fprintf(w, "  %d. %s\n", i+1, n)
	}
}

func printEntry(w io.Writer, what string, e *agent.Entry) {
	fmt.Fprintf(w, "%s %s by %s (from %s)\n", what, e.Slot, e.Image, e.OldImage)
	fmt.Fprintf(w, "  phase %s, started %s, proven %s\n", e.Phase, e.Started.Format(time.RFC3339), yesNo(e.Proven))
	fmt.Fprintf(w, "  before it: weight %d, state %s, addr %s (drain mode %s)\n", e.Weight, e.State, dash(e.Addr), e.DrainMode)
	var flags []string
	for _, f := range []struct {
		on   bool
		name string
	}{{e.Drained, "drained"}, {e.Maint, "maint"}, {e.Stopped, "old-stopped"}, {e.Renamed, "renamed"}, {e.Switched, "addr-switched"}, {e.StartFirst, "start-first"}, {e.Canary, "canary"}} {
		if f.on {
			flags = append(flags, f.name)
		}
	}
	fmt.Fprintf(w, "  flags: %s\n", dash(strings.Join(flags, " ")))
	if e.Failure != "" {
		fmt.Fprintf(w, "  WEDGED: the last recovery failed at %s:\n", e.FailedAt.Format(time.RFC3339))
		for _, l := range strings.Split(e.Failure, "\n") {
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
}

func printLeft(w io.Writer, p agent.Pending) {
	fmt.Fprintln(w, "now:")
	for _, c := range []struct {
		what string
		c    *agent.ContainerState
	}{{"old container", p.Old}, {"new container", p.New}} {
		switch {
		case c.c == nil:
			fmt.Fprintf(w, "  %-14s none\n", c.what)
		case c.c.Err != "":
			fmt.Fprintf(w, "  %-14s %s %s: %s\n", c.what, shortID(c.c.ID), c.c.State, c.c.Err)
		default:
			fmt.Fprintf(w, "  %-14s %s %s %s %s\n", c.what, dash(shortID(c.c.ID)), dash(c.c.Name), dash(c.c.Image), c.c.State)
		}
	}
	if s := p.Server; s != nil {
		printServer(w, "server", s)
	}
}

func printServer(w io.Writer, what string, s *agent.ServerState) {
	if s.Err != "" {
		fmt.Fprintf(w, "  %-14s %s/%s: %s\n", what, s.Backend, s.Server, s.Err)
		return
	}
	fmt.Fprintf(w, "  %-14s %s/%s status %s, admin %s, weight %d, addr %s\n", what, s.Backend, s.Server, s.Status, s.Admin, s.Weight, dash(s.Addr))
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
