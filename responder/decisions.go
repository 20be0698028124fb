package responder

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/packetscope/packetscope/agentapi"
)

// GET /api/v1/decisions is paginated: at most maxDecisionsPage decisions per
// page and at most maxDecisionsBytes of JSON, whichever comes first; "next"
// is the id to pass as ?before= for the following page. Without the bounds
// one request for the whole trail marshalled it all at once (?limit=1000
// answered 125 MB and took the responder's RSS past 500 MB).
const (
	defaultDecisionsPage = 20
	maxDecisionsPage     = 200
	maxDecisionsBytes    = 4 << 20
)

// DecisionsPage is the body of GET /api/v1/decisions.
type DecisionsPage struct {
	Decisions []json.RawMessage `json:"decisions"`
	Next      string            `json:"next,omitempty"` // ?before= for the next page; "" on the last
	Truncated bool              `json:"truncated,omitempty"`
}

func (r *Responder) getDecisions(w http.ResponseWriter, req *http.Request) {
	if r.apiToken.Configured() {
		if ok, msg := r.apiToken.Check(req); !ok {
			agentapi.Challenge(w)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": msg + " (the --api.token-file token)"})
			return
		}
	}
	limit := defaultDecisionsPage
	if s := req.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit: must be a positive integer"})
			return
		}
		limit = min(n, maxDecisionsPage)
	}
	before := req.URL.Query().Get("before")
	if len(before) > 64 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "before: not a decision id"})
		return
	}
	// One more than the page, to know whether there is a next page.
	ds := r.audit.List(limit+1, before)
	page := DecisionsPage{Decisions: []json.RawMessage{}}
	size := 0
	for i, d := range ds {
		if i == limit {
			page.Next = ds[i-1].ID
			break
		}
		line, err := encodeDecision(d)
		if err != nil {
			continue
		}
		line = bytes.TrimRight(line, "\n")
		if size+len(line) > maxDecisionsBytes && len(page.Decisions) > 0 {
			page.Next, page.Truncated = ds[i-1].ID, true
			break
		}
		size += len(line) + 1
		page.Decisions = append(page.Decisions, line)
	}
	writeJSON(w, http.StatusOK, page)
}
