package jaegertest

import (
	"encoding/json"
	"testing"
)

// span is one span of a test trace in Jaeger's JSON.
type span struct {
	ID, Name, Proc, Parent string
	Start                  int64
}

func trace(tb testing.TB, spans ...span) Trace {
	tb.Helper()
	var l []map[string]any
	for _, s := range spans {
		m := map[string]any{"spanID": s.ID, "operationName": s.Name, "processID": s.Proc, "startTime": s.Start}
		if s.Parent != "" {
			m["references"] = []map[string]any{{"spanID": s.Parent}}
		}
		l = append(l, m)
	}
	raw, _ := json.Marshal(map[string]any{"traceID": "t", "spans": l,
		"processes": map[string]any{"p1": map[string]any{"serviceName": "a"}, "p2": map[string]any{"serviceName": "b"}}})
	var tr Trace
	if err := json.Unmarshal(raw, &tr); err != nil {
		tb.Fatal(err)
	}
	return tr
}

func TestInOrder(t *testing.T) {
	want := []string{"packet rx", "rx core", "rx ip"}
	other := span{"9", "packet tx", "p2", "", 1}
	for _, tc := range []struct {
		name  string
		spans []span
		ok    bool
	}{
		{"in order", []span{{"1", "packet rx", "p1", "", 10}, {"2", "rx core", "p1", "1", 10}, {"3", "rx ip", "p1", "1", 12}, other}, true},
		{"tie listed either way", []span{{"3", "rx ip", "p1", "1", 12}, {"2", "rx core", "p1", "1", 12}, {"1", "packet rx", "p1", "", 10}}, true},
		{"out of order", []span{{"1", "packet rx", "p1", "", 10}, {"2", "rx core", "p1", "1", 13}, {"3", "rx ip", "p1", "1", 12}}, false},
		{"stage missing", []span{{"1", "packet rx", "p1", "", 10}, {"2", "rx core", "p1", "1", 11}}, false},
		{"extra stage", []span{{"1", "packet rx", "p1", "", 10}, {"2", "rx core", "p1", "1", 11}, {"3", "rx ip", "p1", "1", 12}, {"4", "drop", "p1", "1", 12}}, false},
		{"not the root's child", []span{{"1", "packet rx", "p1", "", 10}, {"2", "rx core", "p1", "1", 11}, {"3", "rx ip", "p1", "2", 12}}, false},
		{"root has a parent", []span{{"1", "packet rx", "p1", "9", 10}, {"2", "rx core", "p1", "1", 11}, {"3", "rx ip", "p1", "1", 12}, other}, false},
		{"other service only", []span{other}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := InOrder(trace(t, tc.spans...), "a", want); got != tc.ok {
				t.Errorf("InOrder = %v, want %v", got, tc.ok)
			}
		})
	}
}
