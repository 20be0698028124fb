package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

// rulesConfig holds the flags of `packetscope rules list|add|delete`.
type rulesConfig struct {
	agentURL  string
	tokenFile string
	timeout   time.Duration
	output    string // table | json

	listCmd, addCmd, deleteCmd string // kingpin full command names

	// rules add
	file, id, reason, origin string
	action                   rule.Action
	stdin                    bool
	ratePPS                  uint32
	lifetime                 time.Duration
	match                    rule.Match // set by the match flags (addMatchFlags)

	// rules delete
	ids []string

	// Where the command reads a rule from (--stdin) and writes its output;
	// nil means os.Stdin and os.Stdout. Tests set them.
	in  io.Reader
	out io.Writer
}

func (c *rulesConfig) addFlags(cmd *kingpin.CmdClause) {
	cmd.Flag("agent.url", "Agent API base URL.").Default("http://" + loopbackURLHost(defaultAgentListenAddress)).StringVar(&c.agentURL)
	cmd.Flag("api.token-file", "File holding the agent's bearer token (needed by add and delete).").StringVar(&c.tokenFile)
	cmd.Flag("timeout", "Timeout of each call to the agent.").Default("10s").DurationVar(&c.timeout)
	cmd.Flag("output", "Output format: table or json.").Short('o').Default("table").EnumVar(&c.output, "table", "json")

	list := cmd.Command("list", "List the agent's active rules with hit counters and expiry.").Default()
	c.listCmd = list.FullCommand()

	add := cmd.Command("add", "Add a rule, from a JSON file (--file, or --stdin) or from match flags.")
	c.addCmd = add.FullCommand()
	add.Flag("file", "Rule JSON file (the contract's rule object); '-' reads standard input.").Short('f').StringVar(&c.file)
	add.Flag("stdin", "Read the rule JSON from standard input.").BoolVar(&c.stdin)
	add.Flag("id", "Rule id; default: the agent assigns one.").StringVar(&c.id)
	enumVar(add.Flag("action", "drop, rate_limit or monitor."), &c.action, rule.ActionDrop, rule.Actions...)
	add.Flag("rate-pps", "Packets per second allowed through with --action rate_limit.").Uint32Var(&c.ratePPS)
	add.Flag("ttl", "How long the rule lives (rule ttl_seconds), e.g. 10m or 2h.").Default("10m").DurationVar(&c.lifetime)
	add.Flag("reason", "Why, in a sentence (kept with the rule).").StringVar(&c.reason)
	enumVar(add.Flag("origin", "manual, builtin or llm."), &c.origin, rule.OriginManual, rule.Origins...)
	addMatchFlags(add, &c.match)

	del := cmd.Command("delete", "Delete rules by id.")
	c.deleteCmd = del.FullCommand()
	del.Arg("id", "Rule ids.").Required().StringsVar(&c.ids)
}

// handles reports whether cmd (a kingpin full command name) is a rules subcommand.
func (c *rulesConfig) handles(cmd string) bool {
	return cmd != "" && (cmd == c.listCmd || cmd == c.addCmd || cmd == c.deleteCmd)
}

// runRules runs one `packetscope rules` subcommand against the agent API.
func runRules(ctx context.Context, cfg rulesConfig, cmd string) error {
	if cfg.out == nil {
		cfg.out = os.Stdout
	}
	if cfg.in == nil {
		cfg.in = os.Stdin
	}
	token, err := readSecretFile(cfg.tokenFile, "--api.token-file")
	if err != nil {
		return err
	}
	client := agentapi.NewClient(cfg.agentURL, token, &http.Client{Timeout: cfg.timeout})
	switch cmd {
	case cfg.listCmd:
		return rulesList(ctx, cfg, client)
	case cfg.addCmd:
		if token == "" {
			return errors.New("rules add needs the agent's token: pass --api.token-file")
		}
		return rulesAdd(ctx, cfg, client)
	case cfg.deleteCmd:
		if token == "" {
			return errors.New("rules delete needs the agent's token: pass --api.token-file")
		}
		for _, id := range cfg.ids {
			if err := client.DeleteRule(ctx, id); err != nil {
				return explainAPIError(err, cfg.agentURL)
			}
			fmt.Fprintf(cfg.out, "deleted %s\n", id)
		}
		return nil
	}
	return fmt.Errorf("unknown rules command %q", cmd)
}

func rulesList(ctx context.Context, cfg rulesConfig, client *agentapi.Client) error {
	rules, err := client.ListRules(ctx)
	if err != nil {
		return explainAPIError(err, cfg.agentURL)
	}
	if cfg.output == "json" {
		return writeRulesJSON(cfg.out, rules)
	}
	return writeRulesTable(cfg.out, rules, time.Now())
}

func rulesAdd(ctx context.Context, cfg rulesConfig, client *agentapi.Client) error {
	r, err := ruleFromConfig(cfg)
	if err != nil {
		return err
	}
	added, err := client.AddRule(ctx, r)
	if err != nil {
		return explainAPIError(err, cfg.agentURL)
	}
	if cfg.output == "json" {
		return writeRulesJSON(cfg.out, added)
	}
	return writeRulesTable(cfg.out, []rule.Rule{added}, time.Now())
}

// ruleFromConfig builds the rule from --file/--stdin, or from the match flags;
// it is validated here so a typo is reported without a round trip.
func ruleFromConfig(cfg rulesConfig) (rule.Rule, error) {
	fromFlags := !cfg.match.IsEmpty()
	if cfg.file != "" || cfg.stdin {
		if fromFlags {
			return rule.Rule{}, errors.New("give the rule as JSON (--file/--stdin) or as match flags, not both")
		}
		var data []byte
		var err error
		if cfg.stdin || cfg.file == "-" {
			data, err = io.ReadAll(io.LimitReader(cfg.in, agentapi.MaxRuleBodyBytes+1))
		} else {
			data, err = os.ReadFile(cfg.file)
		}
		if err != nil {
			return rule.Rule{}, fmt.Errorf("read rule: %w", err)
		}
		r, err := rule.ParseRule(data)
		if err != nil {
			return rule.Rule{}, fmt.Errorf("invalid rule: %w", err)
		}
		return r, nil
	}
	if !fromFlags {
		// A rule with no match field would match every packet: refuse to
		// build one by accident from a forgotten flag.
		return rule.Rule{}, errors.New("no match given: pass match flags (--src, --protocol, --dst-port, ...) or --file")
	}
	if cfg.lifetime%time.Second != 0 || cfg.lifetime <= 0 {
		return rule.Rule{}, fmt.Errorf("--ttl: %s is not a positive whole number of seconds", cfg.lifetime)
	}
	r := rule.Rule{
		ID: cfg.id, Action: cfg.action, RatePPS: cfg.ratePPS, Match: cfg.match,
		TTLSeconds: int64(cfg.lifetime / time.Second), Reason: cfg.reason, Origin: cfg.origin,
	}
	if err := r.Validate(); err != nil {
		return rule.Rule{}, fmt.Errorf("invalid rule: %w", err)
	}
	return r, nil
}

// explainAPIError adds what an operator should do about common failures.
func explainAPIError(err error, agentURL string) error {
	if ae, ok := agentapi.AsAPIError(err); ok {
		switch ae.Status {
		case http.StatusUnauthorized:
			return fmt.Errorf("%w (check --api.token-file against the agent's)", err)
		}
		return err
	}
	return fmt.Errorf("%w (is the agent running at %s? set --agent.url)", err, agentURL)
}

func writeRulesJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeRulesTable(w io.Writer, rules []rule.Rule, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tACTION\tMATCH\tEXPIRES IN\tPACKETS\tBYTES\tORIGIN\tREASON")
	for _, r := range rules {
		action := string(r.Action)
		if r.Action == rule.ActionRateLimit {
			action += fmt.Sprintf("(%d pps)", r.RatePPS)
		}
		expires := "-"
		if !r.ExpiresAt.IsZero() {
			expires = max(r.ExpiresAt.Sub(now), 0).Truncate(time.Second).String()
		}
		origin := r.Origin
		if origin == "" {
			origin = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n",
			r.ID, action, describeMatch(r.Match), expires, r.Packets, r.Bytes, origin, oneLine(r.Reason))
	}
	return tw.Flush()
}

// describeMatch writes a match compactly, in the rule JSON's field names.
func describeMatch(m rule.Match) string {
	var parts []string
	for _, f := range rule.MatchFields() {
		if v, ok := f.Format(m); ok {
			parts = append(parts, f.Name+"="+v)
		}
	}
	if len(parts) == 0 {
		return "any"
	}
	return strings.Join(parts, " ")
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 60 {
		s = string(r[:57]) + "..."
	}
	if s == "" {
		return "-"
	}
	return s
}
