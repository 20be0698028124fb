package responder

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHugeAlertAuditRestart: a 1 MB alert of '<' characters neither blows up
// the audit line (JSON's HTML escaping made it 6 MB) nor keeps the next
// start from reading the trail.
func TestHugeAlertAuditRestart(t *testing.T) {
	agent := newFakeAgent(t, ordinaryTraffic(11, 1000), nil)
	cfg := Config{AgentURL: agent.srv.URL, AgentURLs: []string{"http://127.0.0.2:9"}} // two agents: an unknown instance is recorded at once
	tr := startResponder(t, cfg, true)
	body := payload(t, "alertmanager-firing.json", func(m map[string]any) {
		a := m["alerts"].([]any)[0].(map[string]any)
		a["annotations"].(map[string]any)["description"] = "HUGE"
		a["labels"].(map[string]any)["instance"] = "node-x:9436"
		delete(m, "commonAnnotations")
	})
	// Raw '<' as a sender may write them; encoding/json would escape them.
	body = bytes.Replace(body, []byte("HUGE"), bytes.Repeat([]byte("<"), MaxWebhookBody-len(body)-16), 1)
	if code, text := tr.post(t, webhookToken, body); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	d := tr.waitDecision(t, isKind("alert"))
	if d.Alert.Truncated == 0 || len(d.Alert.Annotations["description"]) > maxAnnotationLen {
		t.Errorf("annotation stored at %d bytes, truncated count %d", len(d.Alert.Annotations["description"]), d.Alert.Truncated)
	}
	tr.stop()
	data, err := os.ReadFile(tr.audit)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if len(line) > 64<<10 {
			t.Errorf("audit line of %d bytes", len(line))
		}
	}
	cfg.AuditFile = tr.audit
	tr2 := startResponder(t, cfg, false)
	if len(tr2.Decisions(10)) == 0 {
		t.Error("the restarted responder lost the trail")
	}
}

// TestAuditLoaderSkipsBadLines: an oversized, a torn and a foreign line are
// skipped and counted; the good ones around them load.
func TestAuditLoaderSkipsBadLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.jsonl")
	good := func(id string) string {
		b, _ := json.Marshal(Decision{ID: id, Kind: "alert", Outcome: OutcomeNoAction})
		return string(b) + "\n"
	}
	content := good("1") + `{"id":"2","alert":{"name":"` + strings.Repeat("a", 3*maxAuditLine) + `"}}` + "\n" +
		good("3") + "not json\n" + `{"kind":"alert"}` + "\n" + good("4") + `{"id":"5","ki`
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := OpenAuditLog(nil, AuditConfig{Path: path, MaxDecisions: 10})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer a.Close()
	var got []string
	for _, d := range a.All() {
		got = append(got, d.ID)
	}
	if strings.Join(got, ",") != "1,3,4" || a.Skipped() != 4 {
		t.Errorf("loaded %v, skipped %d; want 1,3,4 and 4 skipped", got, a.Skipped())
	}
}

// TestAuditRotates: past the size bound the file rotates, old files are
// kept up to the count, and a restart reads the newest rotated file too.
func TestAuditRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "decisions.jsonl")
	a, err := OpenAuditLog(nil, AuditConfig{Path: path, MaxDecisions: 100000, MaxSizeMB: 1, MaxFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("p", 8<<10)
	for i := range 600 { // ~5 MB
		if err := a.Record(Decision{ID: "d" + itoa(i), Kind: "alert", Error: pad}); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	// lumberjack removes old files in the background.
	var rotated []string
	for range 100 {
		if rotated = rotatedAuditFiles(path); len(rotated) <= 2 {
			break
		}
		sleepMs(20)
	}
	if len(rotated) != 2 {
		t.Errorf("%d rotated files, want 2: %v", len(rotated), rotated)
	}
	if st, err := os.Stat(path); err != nil || st.Size() > 1<<20 {
		t.Errorf("current file: %v, %v", st, err)
	}
	b, err := OpenAuditLog(nil, AuditConfig{Path: path, MaxDecisions: 100000})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	all := b.All()
	if len(all) < 100 || all[len(all)-1].ID != "d599" {
		t.Errorf("after restart %d decisions, last %v", len(all), all[len(all)-1].ID)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func sleepMs(n int) { time.Sleep(time.Duration(n) * time.Millisecond) }
