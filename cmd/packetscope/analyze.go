package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/packetscope/packetscope/responder"
	"github.com/packetscope/packetscope/rule"
)

// analyzeConfig is `packetscope analyze`: the analyst and guardrails run
// offline on a capture.
type analyzeConfig struct {
	pcap       string
	baseline   string
	attack     string
	neverBlock []string
	output     string
	analyst    analystConfig
	mode       responder.Mode
	ruleTTL    time.Duration
	out        io.Writer // nil: stdout (tests set it)
}

func (c *analyzeConfig) addFlags(cmd *kingpin.CmdClause) {
	cmd.Flag("pcap", "Capture (pcap or pcapng) of the attack traffic.").Required().StringVar(&c.pcap)
	cmd.Flag("baseline", "Capture of ordinary traffic to measure collateral against; without it collateral is not measured.").StringVar(&c.baseline)
	cmd.Flag("attack", "The alert's attack label to scope the analysis by, as the shipped alerts set it (udp_amplification, udp_flood, fragment_flood, syn_flood, ack_flood, rst_flood, tcp_flood, icmp_flood); default: the class that grew most.").StringVar(&c.attack)
	cmd.Flag("never-block", "CIDR a rule must never cover (the node's addresses, gateways); repeatable.").StringsVar(&c.neverBlock)
	cmd.Flag("output", "text or json.").Default("text").EnumVar(&c.output, "text", "json")
	c.analyst.addFlags(cmd)
	enumVar(cmd.Flag("mode", "enforce or monitor: the action the proposed rules would get."),
		&c.mode, responder.ModeEnforce, responder.Modes...)
	cmd.Flag("responder.rule-ttl", "TTL the proposed rules would get.").Default(durationDefault(responder.DefaultRuleTTL)).DurationVar(&c.ruleTTL)
}

func runAnalyze(ctx context.Context, c analyzeConfig) error {
	out := c.out
	if out == nil {
		out = os.Stdout
	}
	attack, err := responder.ReadCaptureFile(c.pcap)
	if err != nil {
		return err
	}
	var baseline []rule.Packet
	if c.baseline != "" {
		if baseline, err = responder.ReadCaptureFile(c.baseline); err != nil {
			return err
		}
	}
	protected, err := responder.ParseNeverBlock(c.neverBlock)
	if err != nil {
		return err
	}
	llm, err := c.analyst.llmConfig()
	if err != nil {
		return err
	}
	cfg := responder.OfflineConfig{Analyst: c.analyst.analyst, LLM: llm, Mode: c.mode, RuleTTL: c.ruleTTL, Protected: protected,
		Attack: c.attack}
	res, err := responder.AnalyzeOffline(ctx, cfg, attack, baseline)
	if err != nil {
		return fmt.Errorf("analyze %s: %w", c.pcap, err)
	}
	if c.output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printAnalysis(out, c, len(attack), len(baseline), res)
	return nil
}

func printAnalysis(w io.Writer, c analyzeConfig, nAttack, nBaseline int, res responder.OfflineResult) {
	fmt.Fprintf(w, "capture:  %s (%d packets)\n", c.pcap, nAttack)
	if c.baseline != "" {
		fmt.Fprintf(w, "baseline: %s (%d packets)\n", c.baseline, nBaseline)
	} else {
		fmt.Fprintln(w, "baseline: none (collateral not measured: pass --baseline with a capture of ordinary traffic)")
	}
	fmt.Fprintf(w, "analyst:  %s\n", res.Analyst)
	if res.LLMError != "" {
		fmt.Fprintf(w, "llm:      not used: %s\n", res.LLMError)
	}
	fmt.Fprintln(w)
	for i, v := range res.Validations {
		verdict := "ACCEPTED"
		if !v.Accepted {
			verdict = "REJECTED: " + v.Reason
		}
		r := v.Rule
		js, _ := json.Marshal(struct {
			Action     rule.Action `json:"action"`
			Match      rule.Match  `json:"match"`
			TTLSeconds int64       `json:"ttl_seconds"`
			Reason     string      `json:"reason,omitempty"`
			Origin     string      `json:"origin"`
		}{r.Action, r.Match, r.TTLSeconds, r.Reason, r.Origin})
		fmt.Fprintf(w, "rule %d  %s\n", i+1, verdict)
		fmt.Fprintf(w, "  coverage   %7.3f %%  (%d of %d capture packets)\n", 100*v.Coverage, v.Replay.AttackMatched, v.Replay.AttackTotal)
		fmt.Fprintf(w, "  collateral %7.3f %%  (%d of %d baseline packets)\n", 100*v.Collateral, v.Replay.BaselineMatched, v.Replay.BaselineTotal)
		if len(v.Notes) > 0 {
			fmt.Fprintf(w, "  notes      %s\n", strings.Join(v.Notes, "; "))
		}
		fmt.Fprintf(w, "  %s\n\n", js)
	}
	if len(res.Validations) == 0 {
		fmt.Fprintln(w, "no rules proposed: no traffic class stands out against the baseline")
		return
	}
	fmt.Fprintf(w, "accepted rules together: coverage %.3f %% (%d/%d), collateral %.3f %% (%d/%d)\n",
		100*res.Replay.Coverage, res.Replay.AttackMatched, res.Replay.AttackTotal,
		100*res.Replay.Collateral, res.Replay.BaselineMatched, res.Replay.BaselineTotal)
}
