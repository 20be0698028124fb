package agentapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// BearerToken checks "Authorization: Bearer <token>" headers. The agent API
// and the responder (webhook, decisions) both use it, so every endpoint
// checks a token the same way.
type BearerToken struct {
	hash [sha256.Size]byte
	set  bool
}

// NewBearerToken returns the checker of token; an empty token is "not
// configured" (each caller decides what that means: refuse, or leave a read
// open).
func NewBearerToken(token string) BearerToken {
	if token == "" {
		return BearerToken{}
	}
	return BearerToken{hash: sha256.Sum256([]byte(token)), set: true}
}

// Configured reports whether there is a token to check against.
func (t BearerToken) Configured() bool { return t.set }

// Check reports whether r carries the token, and if not, the reason to give
// the caller. Hashes are compared, so neither the token's content nor its
// length leaks through timing. Never true when no token is configured.
func (t BearerToken) Check(r *http.Request) (ok bool, reason string) {
	given, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !found {
		return false, "missing bearer token (Authorization: Bearer <token>)"
	}
	h := sha256.Sum256([]byte(strings.TrimSpace(given)))
	if !t.set || subtle.ConstantTimeCompare(h[:], t.hash[:]) != 1 {
		return false, "wrong bearer token"
	}
	return true, ""
}

// Challenge marks a 401 as one a bearer token answers (RFC 6750).
func Challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="packetscope"`)
}
