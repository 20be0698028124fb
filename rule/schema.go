package rule

// The rule JSON's enumerations, listed once for whatever offers them as
// choices (the LLM's tool schema, the CLI's flags). Validate checks them.

// Actions are the values of a rule's "action".
var Actions = []Action{ActionDrop, ActionRateLimit, ActionMonitor}

// Fragments are the values of a match's "fragment".
var Fragments = []Fragment{FragmentAny, FragmentNone, FragmentFirst, FragmentLater}

// Origins of a rule (its "origin"): who proposed it. The responder's
// analysts are named after the origins they give their rules.
const (
	OriginManual  = "manual"
	OriginBuiltin = "builtin"
	OriginLLM     = "llm"
)

// Origins are the values of a rule's "origin".
var Origins = []string{OriginManual, OriginBuiltin, OriginLLM}
