package agentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/packetscope/packetscope/rule"
)

// APIError is a response from the agent API with an error status. Callers can
// tell a refusal (4xx: the request was wrong and retrying will not help) from
// a failure of the agent (5xx); a network error is not an *APIError.
type APIError struct {
	Status  int    // HTTP status code
	Message string // the agent's "error" text, or the body when it was not JSON
	Field   string // the invalid rule field, on a 400 for a bad rule
}

func (e *APIError) Error() string {
	return fmt.Sprintf("agent API: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// IsClientError reports whether the agent refused the request itself (4xx).
func (e *APIError) IsClientError() bool { return e.Status >= 400 && e.Status < 500 }

// Client calls one agent's API. It is safe for concurrent use.
type Client struct {
	base   *url.URL
	urlErr error // a bad base URL, reported by every call
	token  string
	hc     *http.Client
}

// maxResponseBytes bounds what the client reads from an agent: a traffic
// report with MaxReportSamples samples is a few MB.
const maxResponseBytes = 64 << 20

// NewClient returns a client for the agent at baseURL (e.g.
// http://127.0.0.1:9436). token is sent on every call (mutations and traffic reads need it); hc nil means a
// client with a 30 s timeout. A malformed baseURL makes every call fail with
// the reason.
func NewClient(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	c := &Client{token: token, hc: hc}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	switch {
	case err != nil:
		c.urlErr = fmt.Errorf("parse agent url %q: %w", baseURL, err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		c.urlErr = fmt.Errorf("parse agent url %q: want http(s)://host:port", baseURL)
	default:
		c.base = u
	}
	return c
}

// ListRules returns the agent's active rules with their counters and expiry.
func (c *Client) ListRules(ctx context.Context) ([]rule.Rule, error) {
	var resp RulesResponse
	if err := c.do(ctx, http.MethodGet, "/api/v1/rules", nil, nil, &resp); err != nil {
		return nil, fmt.Errorf("list rules: %w", err)
	}
	return resp.Rules, nil
}

// AddRule installs a rule and returns it as the agent stored it (id,
// created_at and expires_at set).
func (c *Client) AddRule(ctx context.Context, r rule.Rule) (rule.Rule, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return rule.Rule{}, fmt.Errorf("encode rule: %w", err)
	}
	var added rule.Rule
	if err := c.do(ctx, http.MethodPost, "/api/v1/rules", nil, body, &added); err != nil {
		return rule.Rule{}, fmt.Errorf("add rule: %w", err)
	}
	return added, nil
}

// DeleteRule removes a rule; an unknown id is an *APIError with status 404.
func (c *Client) DeleteRule(ctx context.Context, id string) error {
	if err := c.do(ctx, http.MethodDelete, "/api/v1/rules/"+url.PathEscape(id), nil, nil, nil); err != nil {
		return fmt.Errorf("delete rule %q: %w", id, err)
	}
	return nil
}

// Traffic returns the agent's traffic report for [from, to] with at most
// maxSamples sampled headers (the agent caps it at MaxReportSamples).
func (c *Client) Traffic(ctx context.Context, from, to time.Time, maxSamples int) (TrafficReport, error) {
	q := url.Values{
		"from":    {from.UTC().Format(time.RFC3339Nano)},
		"to":      {to.UTC().Format(time.RFC3339Nano)},
		"samples": {strconv.Itoa(max(maxSamples, 0))},
	}
	var rep TrafficReport
	if err := c.do(ctx, http.MethodGet, "/api/v1/traffic", q, nil, &rep); err != nil {
		return TrafficReport{}, fmt.Errorf("get traffic: %w", err)
	}
	return rep, nil
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body []byte, out any) error {
	if c.urlErr != nil {
		return c.urlErr
	}
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// Every call carries the token: mutations need it, and so do the
	// sensitive reads (traffic) once the agent has one.
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode >= 300 {
		apiErr := &APIError{Status: resp.StatusCode}
		var er ErrorResponse
		if json.Unmarshal(data, &er) == nil && er.Error != "" {
			apiErr.Message, apiErr.Field = er.Error, er.Field
		} else {
			apiErr.Message = strings.TrimSpace(string(data[:min(len(data), 512)]))
		}
		return apiErr
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

// AsAPIError returns the *APIError in err's chain, if any.
func AsAPIError(err error) (*APIError, bool) {
	return errors.AsType[*APIError](err)
}
