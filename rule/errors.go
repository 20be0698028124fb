package rule

import "errors"

// Errors the rule table returns; the agent API maps them to HTTP statuses.
var (
	ErrRuleNotFound  = errors.New("no rule with that id")                   // 404
	ErrRuleExists    = errors.New("a rule with that id already exists")     // 409
	ErrRuleTableFull = errors.New("rule table is full: delete rules first") // 507
)
