package responder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Message is an Alertmanager webhook notification (version 4), the fields
// of Alertmanager's notify/webhook.Message the responder reads and records.
// It is written here rather than imported: Alertmanager's package links
// every notifier it has (Kafka, memberlist, SNS, ...), tripling the binary.
type Message struct {
	Version            string            `json:"version"`
	GroupKey           string            `json:"groupKey"`
	TruncatedAlerts    uint64            `json:"truncatedAlerts"`
	Receiver           string            `json:"receiver"`
	Status             string            `json:"status"`
	Alerts             []WebhookAlert    `json:"alerts"`
	NotificationReason string            `json:"notification_reason"`
	GroupLabels        map[string]string `json:"groupLabels"`
	CommonLabels       map[string]string `json:"commonLabels"`
	CommonAnnotations  map[string]string `json:"commonAnnotations"`
	RouteLabels        map[string]string `json:"routeLabels"`
	ExternalURL        string            `json:"externalURL"`
}

// WebhookAlert is one alert of a Message.
type WebhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// The JSON keys of Message and WebhookAlert, exactly as Alertmanager writes
// them. encoding/json matches keys case-insensitively; the strict check
// refuses a key that differs from one of these only in case, so that two
// parsers (this one and a proxy's, an auditor's) cannot read one body two
// ways.
var (
	messageKeys = keySet(`version groupKey truncatedAlerts receiver status alerts notification_reason groupLabels commonLabels commonAnnotations routeLabels externalURL`)
	alertKeys   = keySet(`status labels annotations startsAt endsAt generatorURL fingerprint`)
)

func keySet(s string) map[string]bool {
	m := map[string]bool{}
	for _, k := range strings.Fields(s) {
		m[k] = true
	}
	return m
}

// maxJSONDepth bounds nesting in a webhook body; Alertmanager's is 3 deep.
const maxJSONDepth = 16

// checkStrictJSON is rule.UnmarshalStrict's check without its refusal of
// unknown keys: Alertmanager adds fields to its payload over versions
// (truncatedAlerts, notification_reason), and a responder that 400s a newer
// Alertmanager's notifications would stop defending on an upgrade.
//
// checkStrictJSON walks body's tokens and refuses what encoding/json would
// silently accept: a duplicate key in any object (the last would win), a key
// of the message or an alert that matches a known one only case-folded,
// data after the top-level value, and nesting deeper than maxJSONDepth.
func checkStrictJSON(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := walkJSON(dec, "", 0, messageKeys); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func walkJSON(dec *json.Decoder, path string, depth int, known map[string]bool) error {
	if depth > maxJSONDepth {
		return fmt.Errorf("%s: nested deeper than %d", orRoot(path), maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON: %v", err)
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return fmt.Errorf("invalid JSON: %v", err)
			}
			k, _ := kt.(string)
			if seen[k] {
				return fmt.Errorf("%s: duplicate key %q", orRoot(path), k)
			}
			seen[k] = true
			if known != nil && !known[k] {
				for want := range known {
					if strings.EqualFold(k, want) {
						return fmt.Errorf("%s: key %q: the field is %q (keys are case-sensitive)", orRoot(path), k, want)
					}
				}
			}
			var next map[string]bool
			if path == "" && k == "alerts" {
				next = alertKeys // applies to the array's elements
			}
			if err := walkJSON(dec, join(path, k), depth+1, next); err != nil {
				return err
			}
		}
		_, err = dec.Token() // '}'
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := walkJSON(dec, fmt.Sprintf("%s[%d]", path, i), depth+1, known); err != nil {
				return err
			}
		}
		_, err = dec.Token() // ']'
	}
	if err != nil {
		return fmt.Errorf("invalid JSON: %v", err)
	}
	return nil
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func orRoot(path string) string {
	if path == "" {
		return "body"
	}
	return path
}
